// Fused ABR-ladder downscaler: one launch reads the source frame once and writes every rung.
//
// Formats: NV12 (8-bit luma plane + interleaved 8-bit UV plane) and P010 (the same layout in
// 16-bit little-endian containers with the sample in the high 10 bits).
//
// Filter: exact area averaging (box filter over each destination pixel's footprint), per plane.
// A destination sample x of an axis with source length S and destination length D covers the
// source interval [x*S/D, (x+1)*S/D). In units of 1/D source pixel, that is [x*S, x*S + S), and
// source pixel s covers [s*D, s*D + D): every overlap is an integer. The overlaps of one
// footprint sum to S; they are turned into 16-bit fixed-point weights that sum to exactly 65536
// by rounding the *cumulative* overlap (C_k = round(c_k * 65536 / S), weight_k = C_k - C_(k-1)),
// so rounding errors never accumulate and an exact factor (1:1, 2x) gives exact weights.
// out = (sum_rows wy * (sum_cols wx * p) + 2^31) >> 32, in integers only: the host build of this
// file, the Rust CPU twin (src/scale/cpu.rs) and the GPU give bit-identical results.
// The chroma plane is scaled as its own plane (ceil(W/2) x ceil(H/2) pairs to w/2 x h/2).
//
// Work split (why tiles): a thread block owns a TILE_W x TILE_H tile of source samples of one
// plane (blockIdx.z: 0 luma, 1 chroma). For every rung it writes exactly the destination samples
// whose footprint *starts* inside its tile; those footprints end at most `halo` samples past the
// tile, so the block copies tile + halo from global memory into shared memory once and computes
// every rung from there. Each destination sample is owned by exactly one block; each source
// sample is read from global memory once per plane plus the halo overlap (about 10-20% for the
// usual 1.5x-3x factors), instead of once per rung. One launch covers all rungs and both planes.
//
// The same file compiles as CUDA (clang, no CUDA headers) and as plain C++ for the host: on the
// host, thread/block indices and shared memory are globals that kernels/host_harness.cc sets while
// it loops over the grid, and the one barrier splits the kernel into two phases that the harness
// runs one after the other for every thread of a block.

#ifndef LADDER_SCALE_CU
#define LADDER_SCALE_CU

typedef unsigned char ls_u8;
typedef unsigned short ls_u16;
typedef unsigned int ls_u32;
typedef unsigned long long ls_u64;

#define LS_MAX_RUNGS 6
#define LS_TILE_W 64
#define LS_TILE_H 32
#define LS_BLOCK_W 32
#define LS_BLOCK_H 8
// Footprints wider than this many taps (a downscale factor above 15) are refused by the host side.
#define LS_MAX_TAPS 16
#define LS_WEIGHT_BITS 16

// One destination frame. Pointers travel as 64-bit integers so the struct has the same layout
// in CUDA, host C++ and Rust (#[repr(C)]).
struct ls_rung {
  ls_u64 y;         // luma plane
  ls_u64 uv;        // interleaved chroma plane
  ls_u32 pitch_y;   // bytes per row
  ls_u32 pitch_uv;  // bytes per row
  ls_u32 width;     // luma width (even)
  ls_u32 height;    // luma height (even)
};

struct ls_params {
  ls_u64 src_y;
  ls_u64 src_uv;
  ls_u32 src_pitch_y;
  ls_u32 src_pitch_uv;
  ls_u32 src_width;   // luma width (any)
  ls_u32 src_height;  // luma height (any)
  ls_u32 rung_count;  // 1..=LS_MAX_RUNGS
  ls_u32 reserved;
  struct ls_rung rung[LS_MAX_RUNGS];
};

#ifdef __CUDA_ARCH__
#define LS_KERNEL extern "C" __attribute__((global))
#define LS_DEVICE static __attribute__((device)) __attribute__((always_inline)) inline
#define LS_TID_X (__nvvm_read_ptx_sreg_tid_x())
#define LS_TID_Y (__nvvm_read_ptx_sreg_tid_y())
#define LS_CTAID_X (__nvvm_read_ptx_sreg_ctaid_x())
#define LS_CTAID_Y (__nvvm_read_ptx_sreg_ctaid_y())
#define LS_CTAID_Z (__nvvm_read_ptx_sreg_ctaid_z())
extern __attribute__((shared)) ls_u16 ls_smem[];
#define LS_SMEM ls_smem
#define LS_LOAD_PHASE 1
#define LS_STORE_PHASE 1
#define LS_SYNC() __syncthreads()
#else
#define LS_KERNEL extern "C"
#define LS_DEVICE static inline
// Set by the host harness for every (block, thread, phase) it runs.
extern "C" ls_u32 ls_host_tid_x, ls_host_tid_y, ls_host_ctaid_x, ls_host_ctaid_y, ls_host_ctaid_z;
extern "C" ls_u32 ls_host_phase;
extern "C" ls_u8* ls_host_smem;
#define LS_TID_X ls_host_tid_x
#define LS_TID_Y ls_host_tid_y
#define LS_CTAID_X ls_host_ctaid_x
#define LS_CTAID_Y ls_host_ctaid_y
#define LS_CTAID_Z ls_host_ctaid_z
#define LS_SMEM ls_host_smem
#define LS_LOAD_PHASE (ls_host_phase == 0)
#define LS_STORE_PHASE (ls_host_phase == 1)
#define LS_SYNC() ((void)0)
#endif

// Samples past the owned tile that footprints starting in it can reach (see the header).
LS_DEVICE ls_u32 ls_halo(ls_u32 src, ls_u32 dst) {
  return (src + dst - 1) / dst - (src % dst == 0 ? 1u : 0u);
}

// First destination index whose footprint starts at or after source index `s`: ceil(s*D/S).
LS_DEVICE ls_u32 ls_first_dst(ls_u32 s, ls_u32 src, ls_u32 dst) {
  return (ls_u32)(((ls_u64)s * dst + src - 1) / src);
}

// Fixed-point weights of destination index `d` (see the header). Returns the first source index;
// writes `*taps` weights, which sum to exactly 1 << LS_WEIGHT_BITS.
LS_DEVICE ls_u32 ls_weights(ls_u32 d, ls_u32 src, ls_u32 dst, ls_u32* w, ls_u32* taps) {
  ls_u32 lo = d * src;  // footprint [lo, lo + src) in 1/dst units; d*src < 2^26 for 8K frames
  ls_u32 first = lo / dst;
  ls_u32 n = 0;
  ls_u32 prev = 0;
  for (ls_u32 s = first;; ++s) {
    ls_u32 end = (s + 1) * dst;  // right edge of source pixel s
    ls_u32 c = end - lo;         // overlap so far
    if (c >= src || n + 1 == LS_MAX_TAPS) {
      w[n++] = (1u << LS_WEIGHT_BITS) - prev;
      break;
    }
    ls_u32 cum = ((c << LS_WEIGHT_BITS) + src / 2) / src;
    w[n++] = cum - prev;
    prev = cum;
  }
  *taps = n;
  return first;
}

template <typename T, int SHIFT, int COMP>
LS_DEVICE void ls_plane(const struct ls_params& p) {
  const ls_u32 plane = COMP == 1 ? 0 : 1;
  const ls_u32 sw = plane ? (p.src_width + 1) / 2 : p.src_width;
  const ls_u32 sh = plane ? (p.src_height + 1) / 2 : p.src_height;
  const ls_u32 x0 = LS_CTAID_X * LS_TILE_W;
  const ls_u32 y0 = LS_CTAID_Y * LS_TILE_H;
  if (x0 >= sw || y0 >= sh) return;  // the chroma grid is smaller: the whole block leaves
  const ls_u32 x1 = x0 + LS_TILE_W < sw ? x0 + LS_TILE_W : sw;
  const ls_u32 y1 = y0 + LS_TILE_H < sh ? y0 + LS_TILE_H : sh;

  ls_u32 hx = 0, hy = 0;
  for (ls_u32 r = 0; r < p.rung_count; ++r) {
    const ls_u32 dw = plane ? p.rung[r].width / 2 : p.rung[r].width;
    const ls_u32 dh = plane ? p.rung[r].height / 2 : p.rung[r].height;
    const ls_u32 ax = ls_halo(sw, dw), ay = ls_halo(sh, dh);
    hx = ax > hx ? ax : hx;
    hy = ay > hy ? ay : hy;
  }
  // Loaded region: [x0, lx1) x [y0, ly1), clipped to the plane.
  const ls_u32 lx1 = x1 + hx < sw ? x1 + hx : sw;
  const ls_u32 ly1 = y1 + hy < sh ? y1 + hy : sh;
  const ls_u32 tw = (lx1 - x0) * COMP;  // tile row length in samples
  ls_u16* tile = (ls_u16*)LS_SMEM;      // 16-bit samples in shared memory for both formats

  const ls_u32 tid = LS_TID_Y * LS_BLOCK_W + LS_TID_X;
  const ls_u32 nthreads = LS_BLOCK_W * LS_BLOCK_H;
  if (LS_LOAD_PHASE) {
    const ls_u8* base = (const ls_u8*)(plane ? p.src_uv : p.src_y);
    const ls_u32 pitch = plane ? p.src_pitch_uv : p.src_pitch_y;
    const ls_u32 count = tw * (ly1 - y0);
    for (ls_u32 i = tid; i < count; i += nthreads) {
      const ls_u32 ty = i / tw, tx = i - ty * tw;
      const T* row = (const T*)(base + (ls_u64)(y0 + ty) * pitch);
      tile[i] = (ls_u16)(row[x0 * COMP + tx] >> SHIFT);
    }
  }
  LS_SYNC();
  if (!LS_STORE_PHASE) return;

  for (ls_u32 r = 0; r < p.rung_count; ++r) {
    const ls_u32 dw = plane ? p.rung[r].width / 2 : p.rung[r].width;
    const ls_u32 dh = plane ? p.rung[r].height / 2 : p.rung[r].height;
    ls_u8* dbase = (ls_u8*)(plane ? p.rung[r].uv : p.rung[r].y);
    const ls_u32 dpitch = plane ? p.rung[r].pitch_uv : p.rung[r].pitch_y;
    // Destination samples whose footprint starts in this tile.
    const ls_u32 dx0 = ls_first_dst(x0, sw, dw), dx1 = ls_first_dst(x1, sw, dw);
    const ls_u32 dy0 = ls_first_dst(y0, sh, dh), dy1 = ls_first_dst(y1, sh, dh);
    for (ls_u32 dx = dx0 + LS_TID_X; dx < dx1; dx += LS_BLOCK_W) {
      ls_u32 wx[LS_MAX_TAPS], nx;
      const ls_u32 sx = ls_weights(dx, sw, dw, wx, &nx) - x0;
      for (ls_u32 dy = dy0 + LS_TID_Y; dy < dy1; dy += LS_BLOCK_H) {
        ls_u32 wy[LS_MAX_TAPS], ny;
        const ls_u32 sy = ls_weights(dy, sh, dh, wy, &ny) - y0;
        T* out = (T*)(dbase + (ls_u64)dy * dpitch) + dx * COMP;
        for (ls_u32 c = 0; c < COMP; ++c) {
          ls_u64 acc = 0;
          for (ls_u32 j = 0; j < ny; ++j) {
            const ls_u16* row = tile + (sy + j) * tw + sx * COMP + c;
            ls_u32 h = 0;  // <= 1023 * 2^16: fits
            for (ls_u32 i = 0; i < nx; ++i) h += wx[i] * row[i * COMP];
            acc += (ls_u64)h * wy[j];
          }
          out[c] = (T)(((acc + (1ull << 31)) >> 32) << SHIFT);
        }
      }
    }
  }
}

template <typename T, int SHIFT>
LS_DEVICE void ls_frame(const struct ls_params& p) {
  if (LS_CTAID_Z == 0)
    ls_plane<T, SHIFT, 1>(p);
  else
    ls_plane<T, SHIFT, 2>(p);
}

// Launch: block (LS_BLOCK_W, LS_BLOCK_H, 1); grid (ceil(W / LS_TILE_W), ceil(H / LS_TILE_H), 2)
// for the luma size W x H; dynamic shared memory from ls_smem_bytes (mirrored in Rust).
LS_KERNEL void ladder_scale_nv12(struct ls_params p) { ls_frame<ls_u8, 0>(p); }
LS_KERNEL void ladder_scale_p010(struct ls_params p) { ls_frame<ls_u16, 6>(p); }

#endif  // LADDER_SCALE_CU
