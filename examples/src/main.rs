//! `cargo run -p pool-examples -- [ADDR] [POOL_SIZE]`: the thread-per-request
//! HTTP service of `pool_examples`, on the simulated database.

fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let size = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    let service = pool_examples::Service::start(&addr, size)?;
    println!("listening on http://{} (pool of {size})", service.addr());
    println!(
        "try: curl http://{}/items/7  /transfer  /metrics  /health",
        service.addr()
    );
    service.join();
    Ok(())
}
