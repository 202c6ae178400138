//! The Rust API's cost per unary call, the baseline for the C ABI bench:
//! `rust_unary_bench TARGET N` prints wall and process-CPU µs per call.

use std::time::Instant;

use engine::{CallOptions, Channel, ChannelOptions};

fn cpu_us() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the buffer we own.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) as f64 * 1e6 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (target, n): (&str, u64) = (&args[1], args[2].parse().expect("N"));
    let channel = Channel::new(target, ChannelOptions::default()).expect("channel");
    let request = bytes::Bytes::from_static(&[0x0a, 5, b'b', b'e', b'n', b'c', b'h']);
    let run = move |count: u64| {
        let channel = channel.clone();
        let request = request.clone();
        engine::rt::block_on(async move {
            for _ in 0..count {
                let opts = CallOptions { timeout: Some(std::time::Duration::from_secs(5)), ..Default::default() };
                channel.unary("/helloworld.Greeter/SayHello", request.clone(), opts).await.expect("call");
            }
        })
    };
    // Like the C loop: each call is driven from the caller's thread and waits
    // for its result there (block_on per call), so both pay one thread hop.
    for _ in 0..200 {
        run(1);
    }
    let (t0, c0) = (Instant::now(), cpu_us());
    for _ in 0..n {
        run(1);
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64() * 1e6, cpu_us() - c0);
    println!(
        "rust-api-blocking calls={n} wall_us_per_call={:.2} cpu_us_per_call={:.2}",
        wall / n as f64,
        cpu / n as f64
    );
    // And the async loop a Rust program would write: all calls in one task.
    let (t0, c0) = (Instant::now(), cpu_us());
    run(n);
    let (wall, cpu) = (t0.elapsed().as_secs_f64() * 1e6, cpu_us() - c0);
    println!("rust-api-async calls={n} wall_us_per_call={:.2} cpu_us_per_call={:.2}", wall / n as f64, cpu / n as f64);
}
