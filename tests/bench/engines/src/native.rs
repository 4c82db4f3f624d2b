//! Native Rust versions of the workloads: the reference results and the speed of light.
//! Written as a Rust programmer would, with `black_box` only where the optimiser would
//! otherwise compute the answer at compile time.

use std::fmt::Write;
use std::hint::black_box;

use crate::host::{self, CHARSET, RustData};
use crate::measure::Sink;
use crate::workloads::*;

pub fn bench(sink: &mut Sink) {
    let engine = "native";
    sink.run(Workload::SortUserdata, engine, "", sort_userdata, |items| {
        Output::sorted(items.iter().map(|d| d.0.as_str()))
    });
    sink.run(
        Workload::Fib,
        engine,
        "",
        || fib(black_box(FIB_N)),
        |n| Output::Int(*n),
    );
    sink.run(
        Workload::Loop,
        engine,
        "black_box on the counter each iteration (else LLVM folds the loop to a formula)",
        || count_loop(black_box(LOOP_N)),
        |n| Output::Int(*n),
    );
    sink.run(
        Workload::Sieve,
        engine,
        "",
        || sieve(black_box(SIEVE_N)),
        |n| Output::Int(*n),
    );
    sink.run(
        Workload::Strings,
        engine,
        "",
        || strings(black_box(STRING_PIECES)),
        |s| Output::text(s),
    );
    sink.run(
        Workload::NBody,
        engine,
        "",
        || nbody(black_box(NBODY_STEPS)),
        |e| Output::Float(*e),
    );
    let document = sink.reference.json_document.clone();
    sink.run(
        Workload::Json,
        engine,
        "serde_json::Value",
        || json_sum(black_box(&document)),
        |n| Output::Int(*n),
    );
    sink.skip(Workload::Compile, engine, "not applicable (ahead-of-time)");
}

fn generate_string(len: i64) -> String {
    let mut s = String::with_capacity(len as usize);
    for _ in 0..len {
        let c = host::rand(16) as usize;
        s.push_str(&CHARSET[c..c + 1]);
    }
    s
}

fn partition(items: &mut [RustData], lo: usize, hi: usize) -> usize {
    let pivot_index = (lo + hi) / 2;
    items.swap(pivot_index, hi);
    let mut j = lo;
    for i in lo..hi {
        if items[i] < items[hi] {
            items.swap(i, j);
            j += 1;
        }
    }
    items.swap(j, hi);
    j
}

fn quicksort(items: &mut [RustData], mut lo: usize, hi: usize) {
    while lo < hi {
        let p = partition(items, lo, hi);
        if p > 0 {
            quicksort(items, lo, p - 1);
        }
        lo = p + 1;
    }
}

/// The same quicksort the scripts run (middle pivot, Lomuto partition), on the same strings.
pub fn sort_userdata() -> Vec<RustData> {
    host::reset_rand();
    let mut items = Vec::new();
    for _ in 0..SORT_ITEMS {
        let len = 8 + host::rand(16);
        items.push(RustData(generate_string(len)));
    }
    let hi = items.len() - 1;
    quicksort(&mut items, 0, hi);
    items
}

pub fn fib(n: i64) -> i64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

pub fn count_loop(n: i64) -> i64 {
    let mut sum: i64 = 0;
    for i in 0..n {
        sum += black_box(i);
    }
    sum
}

pub fn sieve(n: i64) -> i64 {
    let n = n as usize;
    let mut composite = vec![false; n + 1];
    let mut count = 0;
    for i in 2..=n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j <= n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

pub fn strings(pieces: i64) -> String {
    let mut s = String::new();
    for i in 0..pieces {
        write!(s, "<{i}:{}>", i % 7).unwrap();
    }
    s
}

pub const SOLAR_MASS: f64 = 4.0 * std::f64::consts::PI * std::f64::consts::PI;
pub const DAYS_PER_YEAR: f64 = 365.24;

/// Sun, Jupiter, Saturn, Uranus, Neptune: x y z vx vy vz mass (velocities per day, masses
/// in solar masses), as in the Computer Language Benchmarks Game.
pub const BODIES: [[f64; 7]; 5] = [
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    [
        4.841_431_442_464_72,
        -1.160_320_044_027_428_4,
        -0.103_622_044_471_123_1,
        0.001_660_076_642_744_037,
        0.007_699_011_184_197_404,
        -0.000_069_046_000_691_172_96,
        0.000_954_791_938_424_326_6,
    ],
    [
        8.343_366_718_244_58,
        4.124_798_564_124_305,
        -0.403_523_417_114_321_4,
        -0.002_767_425_107_268_624,
        0.004_998_528_012_349_172,
        0.000_023_041_729_757_376_393,
        0.000_285_885_980_666_130_8,
    ],
    [
        12.894_369_562_139_13,
        -15.111_151_401_698_631,
        -0.223_307_578_892_655_73,
        0.002_964_601_375_647_616,
        0.002_378_471_739_594_809_5,
        -0.000_029_658_956_854_023_756,
        0.000_043_662_440_433_515_64,
    ],
    [
        15.379_697_114_850_917,
        -25.919_314_609_987_964,
        0.179_258_772_950_371_18,
        0.002_680_677_724_903_893_2,
        0.001_628_241_700_382_423,
        -0.000_095_159_225_451_971_59,
        0.000_051_513_890_204_661_45,
    ],
];

/// `steps` steps of 0.01 days, then the energy of the system.
pub fn nbody(steps: i64) -> f64 {
    let mut x = [0.0; 5];
    let mut y = [0.0; 5];
    let mut z = [0.0; 5];
    let mut vx = [0.0; 5];
    let mut vy = [0.0; 5];
    let mut vz = [0.0; 5];
    let mut mass = [0.0; 5];
    for (i, body) in BODIES.iter().enumerate() {
        x[i] = body[0];
        y[i] = body[1];
        z[i] = body[2];
        vx[i] = body[3] * DAYS_PER_YEAR;
        vy[i] = body[4] * DAYS_PER_YEAR;
        vz[i] = body[5] * DAYS_PER_YEAR;
        mass[i] = body[6] * SOLAR_MASS;
    }
    let (mut px, mut py, mut pz) = (0.0, 0.0, 0.0);
    for i in 0..5 {
        px += vx[i] * mass[i];
        py += vy[i] * mass[i];
        pz += vz[i] * mass[i];
    }
    vx[0] = -px / SOLAR_MASS;
    vy[0] = -py / SOLAR_MASS;
    vz[0] = -pz / SOLAR_MASS;
    let dt = 0.01;
    for _ in 0..steps {
        for i in 0..5 {
            for j in i + 1..5 {
                let dx = x[i] - x[j];
                let dy = y[i] - y[j];
                let dz = z[i] - z[j];
                let d2 = dx * dx + dy * dy + dz * dz;
                let magnitude = dt / (d2 * d2.sqrt());
                vx[i] -= dx * mass[j] * magnitude;
                vy[i] -= dy * mass[j] * magnitude;
                vz[i] -= dz * mass[j] * magnitude;
                vx[j] += dx * mass[i] * magnitude;
                vy[j] += dy * mass[i] * magnitude;
                vz[j] += dz * mass[i] * magnitude;
            }
        }
        for i in 0..5 {
            x[i] += dt * vx[i];
            y[i] += dt * vy[i];
            z[i] += dt * vz[i];
        }
    }
    let mut energy = 0.0;
    for i in 0..5 {
        energy += 0.5 * mass[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i]);
        for j in i + 1..5 {
            let dx = x[i] - x[j];
            let dy = y[i] - y[j];
            let dz = z[i] - z[j];
            energy -= mass[i] * mass[j] / (dx * dx + dy * dy + dz * dz).sqrt();
        }
    }
    energy
}

pub fn json_sum(document: &str) -> i64 {
    let value: serde_json::Value = serde_json::from_str(document).expect("valid JSON");
    value["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["value"].as_i64().expect("value"))
        .sum()
}
