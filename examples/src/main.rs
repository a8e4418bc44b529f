//! `cargo run -p pool-examples -- [ADDR] [POOL_SIZE] [DATABASE_URL]`: the
//! thread-per-request HTTP service of `pool_examples`. Without a URL (or
//! `DATABASE_URL` in the environment) it serves the simulated database.

fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let size = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    let url = args.next().or_else(|| std::env::var("DATABASE_URL").ok());
    let service = pool_examples::Service::start_with(&addr, size, url.as_deref())?;
    println!("listening on http://{} (pool of {size})", service.addr());
    println!(
        "try: curl http://{}/items/7  /transfer  /metrics  /health",
        service.addr()
    );
    service.join();
    Ok(())
}
