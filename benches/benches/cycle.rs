//! Uncontended get + return: pool-core against r2d2 and a plain mutex pool.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_return_1_thread");
    let ours = pool_core::Pool::builder()
        .max_size(4)
        .build(benches::NoopManager)
        .unwrap();
    group.bench_function("pool-core", |b| b.iter(|| black_box(*ours.get().unwrap())));
    let r2d2 = r2d2::Pool::builder()
        .max_size(4)
        .test_on_check_out(false)
        .build(benches::R2d2Noop)
        .unwrap();
    group.bench_function("r2d2", |b| b.iter(|| black_box(*r2d2.get().unwrap())));
    let floor = benches::MutexPool::new(4);
    group.bench_function("mutex-vec", |b| b.iter(|| black_box(floor.get().conn)));
    group.finish();
}

criterion_group!(benches, cycle);
criterion_main!(benches);
