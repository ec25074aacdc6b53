//! Rebuilds the server when a PostgreSQL migration changes: `refinery::embed_migrations!`
//! reads `migrations/postgres/` at compile time, which cargo does not track on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
