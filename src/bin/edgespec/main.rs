//! The `edgespec` command line: parse, call the library, print. No inference logic lives here.

fn main() {
    println!("edgespec {}", env!("CARGO_PKG_VERSION"));
}
