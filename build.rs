//! Compiles the CUDA ladder kernel as plain C++ (kernels/host_harness.cc includes
//! kernels/ladder_scale.cu) so tests can run the kernel's exact arithmetic on machines with no GPU.
//! Nothing GPU-related is linked: the device build is the committed PTX, loaded at run time.

fn main() {
    println!("cargo:rerun-if-changed=kernels/ladder_scale.cu");
    println!("cargo:rerun-if-changed=kernels/host_harness.cc");
    cc::Build::new()
        .cpp(true)
        .cpp_link_stdlib(None)
        .file("kernels/host_harness.cc")
        .include("kernels")
        .flag_if_supported("-fno-exceptions")
        .flag_if_supported("-fno-rtti")
        .opt_level(2)
        .warnings(true)
        .compile("encore_ladder_host");
}
