/// mimalloc rather than glibc's malloc: the request path of a node allocates
/// and frees many small objects on several threads (see `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(scl_runtime::cli::main());
}
