// Runs kernels/ladder_scale.cu on the CPU: the exact arithmetic and indexing of the GPU kernel,
// for tests on machines with no GPU. Loops over the launch grid the way the device would, one
// thread at a time, in two phases per block around the kernel's single barrier.

#include <stdlib.h>
#include <string.h>

extern "C" {
unsigned int ls_host_tid_x, ls_host_tid_y, ls_host_ctaid_x, ls_host_ctaid_y, ls_host_ctaid_z;
unsigned int ls_host_phase;
unsigned char* ls_host_smem;
}

#include "ladder_scale.cu"

// Dynamic shared memory one block needs: the largest tile plus halo of either plane, as 16-bit
// samples. src/scale/cuda.rs computes the same figure for real launches.
extern "C" ls_u32 encore_ls_smem_bytes(const struct ls_params* p) {
  ls_u32 best = 0;
  for (ls_u32 plane = 0; plane < 2; ++plane) {
    const ls_u32 sw = plane ? (p->src_width + 1) / 2 : p->src_width;
    const ls_u32 sh = plane ? (p->src_height + 1) / 2 : p->src_height;
    ls_u32 hx = 0, hy = 0;
    for (ls_u32 r = 0; r < p->rung_count; ++r) {
      const ls_u32 dw = plane ? p->rung[r].width / 2 : p->rung[r].width;
      const ls_u32 dh = plane ? p->rung[r].height / 2 : p->rung[r].height;
      const ls_u32 ax = ls_halo(sw, dw), ay = ls_halo(sh, dh);
      hx = ax > hx ? ax : hx;
      hy = ay > hy ? ay : hy;
    }
    const ls_u32 bytes = (LS_TILE_W + hx) * (LS_TILE_H + hy) * (plane + 1) * 2;
    best = bytes > best ? bytes : best;
  }
  return best;
}

typedef void (*ls_kernel_fn)(struct ls_params);

static int run_grid(ls_kernel_fn kernel, const struct ls_params* p) {
  if (p->rung_count == 0 || p->rung_count > LS_MAX_RUNGS) return 1;
  ls_u8* smem = (ls_u8*)malloc(encore_ls_smem_bytes(p));
  if (!smem) return 2;
  ls_host_smem = smem;
  const ls_u32 gx = (p->src_width + LS_TILE_W - 1) / LS_TILE_W;
  const ls_u32 gy = (p->src_height + LS_TILE_H - 1) / LS_TILE_H;
  for (ls_host_ctaid_z = 0; ls_host_ctaid_z < 2; ++ls_host_ctaid_z)
    for (ls_host_ctaid_y = 0; ls_host_ctaid_y < gy; ++ls_host_ctaid_y)
      for (ls_host_ctaid_x = 0; ls_host_ctaid_x < gx; ++ls_host_ctaid_x)
        for (ls_host_phase = 0; ls_host_phase < 2; ++ls_host_phase)
          for (ls_host_tid_y = 0; ls_host_tid_y < LS_BLOCK_H; ++ls_host_tid_y)
            for (ls_host_tid_x = 0; ls_host_tid_x < LS_BLOCK_W; ++ls_host_tid_x) kernel(*p);
  ls_host_smem = 0;
  free(smem);
  return 0;
}

// Not thread-safe (the harness state is global): the Rust wrapper serialises calls.
extern "C" int encore_ls_host_nv12(const struct ls_params* p) { return run_grid(ladder_scale_nv12, p); }
extern "C" int encore_ls_host_p010(const struct ls_params* p) { return run_grid(ladder_scale_p010, p); }
