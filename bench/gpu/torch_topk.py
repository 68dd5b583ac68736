# torch.topk baseline for bench/gpu/codecs.mjs: magnitude top-k at n = 1e8, k = 1e6 (abs + topk, and topk alone).
import sys, time
try:
    import torch
except Exception as e:
    print(f"skip: no PyTorch ({e})"); sys.exit(0)
if not torch.cuda.is_available():
    print("skip: torch sees no CUDA device"); sys.exit(0)
n, k = int(1e8), int(1e6)
torch.manual_seed(0)
x = torch.randn(n, device="cuda", dtype=torch.float32)
def timeit(f, iters=10):
    f(); torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters): f()
    b.record(); torch.cuda.synchronize()
    return a.elapsed_time(b) / iters
t_abs_topk = timeit(lambda: torch.topk(x.abs(), k, sorted=False))
ax = x.abs()
t_topk = timeit(lambda: torch.topk(ax, k, sorted=False))
print(f"torch {torch.__version__} {torch.cuda.get_device_name()}: topk(|x|) n=1e8 k=1e6: abs+topk {t_abs_topk:.3f} ms, topk alone {t_topk:.3f} ms")
print("JSON " + '{"torch_abs_topk_ms": %f, "torch_topk_ms": %f}' % (t_abs_topk, t_topk))
