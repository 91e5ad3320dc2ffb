//! `cargo bench --bench matmul`: the same measurement as `cargo xtask bench matmul`
//! (every matmul variant on GPT shapes and 1024³, beside a CPU sgemm, in one run).

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let opts = wgpt::gpu::GpuOptions::from_env().expect("bad WGPT_* environment");
    let ctx = match wgpt::gpu::GpuContext::new(&opts) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("matmul bench needs a GPU adapter: {e}");
            std::process::exit(1);
        }
    };
    let bench_opts = wgpt::bench::MatmulBenchOptions::default();
    if let Err(e) = wgpt::bench::matmul_bench(&ctx, &bench_opts, &mut |line| println!("{line}")) {
        eprintln!("matmul bench failed: {e}");
        std::process::exit(1);
    }
}
