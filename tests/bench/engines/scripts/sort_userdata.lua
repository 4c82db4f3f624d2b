-- script-bench-rs `sort_userdata` in Lua 5.4 / Luau: the host `<` is the userdata's __lt.
local charset = { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f" }

local function generate_string(len)
    local parts = {}
    for k = 1, len do
        parts[k] = charset[rand(16) + 1]
    end
    return table.concat(parts)
end

local function partition(items, lo, hi)
    local pivot_index = (lo + hi) // 2
    local pivot = items[pivot_index]
    items[pivot_index], items[hi] = items[hi], items[pivot_index]
    local j = lo
    for i = lo, hi - 1 do
        if items[i] < pivot then
            items[i], items[j] = items[j], items[i]
            j = j + 1
        end
    end
    items[j], items[hi] = items[hi], items[j]
    return j
end

local function quicksort(items, lo, hi)
    while lo < hi do
        local p = partition(items, lo, hi)
        quicksort(items, lo, p - 1)
        lo = p + 1
    end
end

function sort_userdata(count)
    local items = {}
    for n = 1, count do
        items[n] = RustData.new(generate_string(8 + rand(16)))
    end
    quicksort(items, 1, #items)
    return items
end

local function fib_inner(n)
    if n < 2 then
        return n
    end
    return fib_inner(n - 1) + fib_inner(n - 2)
end

function fib(n)
    return fib_inner(n)
end

function count_loop(n)
    local sum = 0
    for i = 0, n - 1 do
        sum = sum + i
    end
    return sum
end

function sieve(n)
    local composite = {}
    for i = 1, n do
        composite[i] = false
    end
    local count = 0
    for i = 2, n do
        if not composite[i] then
            count = count + 1
            for j = i * i, n, i do
                composite[j] = true
            end
        end
    end
    return count
end

function json_sum(text)
    local document = json_decode(text)
    local sum = 0
    for _, item in ipairs(document.items) do
        sum = sum + item.value
    end
    return sum
end

-- n-body; `bodies` holds x y z vx vy vz mass for each body.
function nbody(steps, bodies)
    local pi = 3.141592653589793
    local solar_mass = 4.0 * pi * pi
    local days_per_year = 365.24
    local x, y, z, vx, vy, vz, mass = {}, {}, {}, {}, {}, {}, {}
    for b = 1, 5 do
        local o = (b - 1) * 7
        x[b] = bodies[o + 1]
        y[b] = bodies[o + 2]
        z[b] = bodies[o + 3]
        vx[b] = bodies[o + 4] * days_per_year
        vy[b] = bodies[o + 5] * days_per_year
        vz[b] = bodies[o + 6] * days_per_year
        mass[b] = bodies[o + 7] * solar_mass
    end
    local px, py, pz = 0.0, 0.0, 0.0
    for i = 1, 5 do
        px = px + vx[i] * mass[i]
        py = py + vy[i] * mass[i]
        pz = pz + vz[i] * mass[i]
    end
    vx[1] = -px / solar_mass
    vy[1] = -py / solar_mass
    vz[1] = -pz / solar_mass
    local dt = 0.01
    local sqrt = math.sqrt
    for step = 1, steps do
        for i = 1, 5 do
            for j = i + 1, 5 do
                local dx = x[i] - x[j]
                local dy = y[i] - y[j]
                local dz = z[i] - z[j]
                local d2 = dx * dx + dy * dy + dz * dz
                local magnitude = dt / (d2 * sqrt(d2))
                vx[i] = vx[i] - dx * mass[j] * magnitude
                vy[i] = vy[i] - dy * mass[j] * magnitude
                vz[i] = vz[i] - dz * mass[j] * magnitude
                vx[j] = vx[j] + dx * mass[i] * magnitude
                vy[j] = vy[j] + dy * mass[i] * magnitude
                vz[j] = vz[j] + dz * mass[i] * magnitude
            end
        end
        for i = 1, 5 do
            x[i] = x[i] + dt * vx[i]
            y[i] = y[i] + dt * vy[i]
            z[i] = z[i] + dt * vz[i]
        end
    end
    local energy = 0.0
    for i = 1, 5 do
        energy = energy + 0.5 * mass[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i])
        for j = i + 1, 5 do
            local dx = x[i] - x[j]
            local dy = y[i] - y[j]
            local dz = z[i] - z[j]
            energy = energy - mass[i] * mass[j] / sqrt(dx * dx + dy * dy + dz * dz)
        end
    end
    return energy
end
