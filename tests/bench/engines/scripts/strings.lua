-- Lua 5.4 has no string interpolation: concatenation into a table, then table.concat.
function strings(pieces)
    local parts = {}
    for i = 0, pieces - 1 do
        parts[i + 1] = "<" .. i .. ":" .. i % 7 .. ">"
    end
    return table.concat(parts)
end
