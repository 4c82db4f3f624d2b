fn main() {
    std::process::exit(scl_runtime::cli::main());
}
