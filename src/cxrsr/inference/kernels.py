"""Triton kernel for one separable convolution block, fused end to end (channels-last activations).

One program takes ``BLOCK_W`` pixels of one image row and all input channels: it accumulates the k x k
depthwise convolution in fp32 registers (zero padding at the image border), multiplies the result by the
1 x 1 pointwise weights as a matrix product (tensor cores for fp16), and applies the epilogue that follows
the block in the generator before writing anything:

- bias (BatchNorm and the depthwise bias are folded into it on the host, see fused.py);
- PReLU with one slope per output channel;
- a residual tensor added (the residual blocks, and the long skip after the trunk);
- PixelShuffle(2): output channel ``4c + 2i + j`` is stored at pixel ``(2h + i, 2w + j)``, channel ``c``;
- ``(tanh(y) + 1) / 2``, which equals ``sigmoid(2y)``, for the generator's output.

So each block reads its input once (neighbouring rows come from cache) and writes its output once; the
pre-shuffle 256-channel tensors and the PReLU / add round trips of the eager model never reach memory.
benchmarks/gpu-analysis.md gives the memory traffic this saves. Under ``TRITON_INTERPRET=1`` the same kernel
runs on the CPU, which is how the tests check it against the reference.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def separable_block_kernel(
    x_ptr, dw_ptr, pw_ptr, bias_ptr, alpha_ptr, res_ptr, out_ptr,
    H, W, N,  # N, the batch size, only keys the autotuner's choice (fused.py): the grid covers N * H rows
    CIN: tl.constexpr, COUT: tl.constexpr, CIN_P: tl.constexpr, COUT_P: tl.constexpr,
    K: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_CO: tl.constexpr,
    PRELU: tl.constexpr, RESIDUAL: tl.constexpr, SHUFFLE: tl.constexpr, SIGMOID2: tl.constexpr,
    IEEE: tl.constexpr,
):
    # Rows on the first grid axis (up to 2**31 - 1 programs; the second allows only 65535). Offsets are
    # 64-bit: a batch of 32 64-channel 1024 x 1024 activations has 2**31 elements.
    row = tl.program_id(0).to(tl.int64)  # n * H + h
    pid_w = tl.program_id(1)
    n = row // H
    h = row % H
    offs_w = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)
    w_ok = offs_w < W
    offs_c = tl.arange(0, CIN_P)
    c_ok = offs_c < CIN

    # depthwise k x k, fp32 accumulation
    acc = tl.zeros((BLOCK_W, CIN_P), dtype=tl.float32)
    R: tl.constexpr = K // 2
    for ky in tl.static_range(K):
        hy = h + (ky - R)
        row_ok = (hy >= 0) & (hy < H)
        for kx in tl.static_range(K):
            wx = offs_w + (kx - R)
            ok = row_ok & (wx >= 0) & (wx < W)
            pix = (n * H + hy) * W + wx
            v = tl.load(x_ptr + pix[:, None] * CIN + offs_c[None, :], mask=ok[:, None] & c_ok[None, :], other=0.0)
            tap = tl.load(dw_ptr + offs_c * (K * K) + (ky * K + kx), mask=c_ok, other=0.0)
            acc += v.to(tl.float32) * tap[None, :]
    a = acc.to(pw_ptr.dtype.element_ty)  # the matrix product's dtype (the input may be fp32, see fused.py)

    # pointwise 1 x 1 as a matrix product, output channels in blocks of BLOCK_CO, then the epilogue
    for co0 in tl.static_range(0, COUT_P, BLOCK_CO):
        offs_co = co0 + tl.arange(0, BLOCK_CO)
        co_ok = offs_co < COUT
        wp = tl.load(pw_ptr + offs_c[:, None] * COUT + offs_co[None, :], mask=c_ok[:, None] & co_ok[None, :],
                     other=0.0)
        if IEEE:
            y = tl.dot(a, wp, input_precision="ieee")
        else:
            y = tl.dot(a, wp)
        y += tl.load(bias_ptr + offs_co, mask=co_ok, other=0.0)[None, :]
        if PRELU:
            slope = tl.load(alpha_ptr + offs_co, mask=co_ok, other=0.0)
            y = tl.where(y >= 0, y, y * slope[None, :])
        store_ok = w_ok[:, None] & co_ok[None, :]
        if SHUFFLE:
            c = offs_co // 4
            i = (offs_co // 2) % 2
            j = offs_co % 2
            oh = 2 * h + i
            ow = 2 * offs_w[:, None] + j[None, :]
            dst = ((n * 2 * H + oh[None, :]) * (2 * W) + ow) * (COUT // 4) + c[None, :]
        else:
            dst = ((n * H + h) * W + offs_w)[:, None] * COUT + offs_co[None, :]
        if RESIDUAL:
            y += tl.load(res_ptr + dst, mask=store_ok, other=0.0).to(tl.float32)
        if SIGMOID2:
            y = tl.sigmoid(2.0 * y)
        tl.store(out_ptr + dst, y.to(out_ptr.dtype.element_ty), mask=store_ok)
