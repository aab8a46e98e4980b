// CUDA kernels of EfficientRotatedNMS_TRT. See rotated_nms_kernels.cuh for the pipeline.
#include "rotated_nms_kernels.cuh"

#include "rotated_nms_sort.cuh"

#include <stdint.h>

namespace trtalign
{
namespace
{

constexpr size_t kAlign = 256;
constexpr int kFilterThreads = 256;
constexpr int kNmsMaxThreads = 1024;

size_t alignUp(size_t v)
{
    return (v + kAlign - 1) / kAlign * kAlign;
}

struct WorkspaceLayout
{
    size_t counts, begins, ends, keysA, keysB, candBoxes, candClasses, sortTemp, sortTempBytes, total;
};

WorkspaceLayout layoutFor(int32_t batchSize, int32_t numBoxes, int32_t numClasses, int32_t topK)
{
    WorkspaceLayout w{};
    int64_t const perImage = (int64_t) numBoxes * numClasses;
    int64_t const items = perImage * batchSize;
    size_t off = 0;
    w.counts = off;
    off += alignUp(sizeof(int32_t) * (size_t) batchSize);
    w.begins = off;
    off += alignUp(sizeof(int32_t) * (size_t) batchSize);
    w.ends = off;
    off += alignUp(sizeof(int32_t) * (size_t) batchSize);
    w.keysA = off;
    off += alignUp(sizeof(uint64_t) * (size_t) items);
    w.keysB = off;
    off += alignUp(sizeof(uint64_t) * (size_t) items);
    w.candBoxes = off;
    off += alignUp(sizeof(float) * kRotatedBoxValues * (size_t) topK * batchSize);
    w.candClasses = off;
    off += alignUp(sizeof(int32_t) * (size_t) topK * batchSize);
    size_t const tempBytes = sortKeysDescendingTempBytes((int32_t) items, batchSize);
    w.sortTemp = off;
    w.sortTempBytes = tempBytes;
    off += alignUp(tempBytes);
    w.total = off;
    return w;
}

//! Float -> unsigned key with the same order (ascending); -0 is first made +0 so that 0 and -0 tie.
__device__ __forceinline__ uint32_t orderedFloatBits(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7FFFFFFFu) == 0u)
    {
        u = 0u; // -0 -> +0
    }
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__global__ void filterCandidatesKernel(RotatedNmsParams p, NmsDataType type, void const* __restrict__ scores,
    int32_t* __restrict__ counts, uint64_t* __restrict__ keys, int64_t perImage)
{
    int64_t const e = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    int32_t const b = blockIdx.y;
    if (e >= perImage)
    {
        return;
    }
    int32_t const c = (int32_t) (e % p.numClasses);
    float const score = loadAsFloat(scores, type, (int64_t) b * perImage + e);
    if (c == p.backgroundClass || !scorePasses(score, p))
    {
        return;
    }
    int32_t const slot = atomicAdd(&counts[b], 1);
    uint64_t const key = ((uint64_t) orderedFloatBits(score) << 32) | (uint64_t) (0xFFFFFFFFu - (uint32_t) e);
    keys[(int64_t) b * perImage + slot] = key;
}

__global__ void segmentBoundsKernel(int32_t batchSize, int64_t perImage, int32_t const* __restrict__ counts,
    int32_t* __restrict__ begins, int32_t* __restrict__ ends)
{
    int32_t const b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b < batchSize)
    {
        begins[b] = (int32_t) (b * perImage);
        ends[b] = (int32_t) (b * perImage + counts[b]);
    }
}

struct CandidateRef
{
    int32_t box;
    int32_t cls;
};

__device__ __forceinline__ CandidateRef decodeCandidate(RotatedNmsParams const& p, uint64_t key)
{
    uint32_t const index = 0xFFFFFFFFu - (uint32_t) (key & 0xFFFFFFFFull);
    CandidateRef r;
    r.box = (int32_t) (index / (uint32_t) p.numClasses);
    r.cls = (int32_t) (index % (uint32_t) p.numClasses);
    return r;
}

//! Greedy NMS of one image per block over its sorted candidates. The candidates' boxes (FP32, one array per
//! coordinate) and classes are first gathered into the workspace in sorted order; then, for each candidate i still
//! alive, every thread tests the later candidates j = i + 1 + tid + k * blockDim against it.
__global__ void __launch_bounds__(1024) greedyNmsKernel(RotatedNmsParams p, NmsDataType type,
    void const* __restrict__ boxes, void const* __restrict__ scores, int32_t const* __restrict__ counts,
    uint64_t const* __restrict__ sortedKeys, int64_t perImage, float* __restrict__ candBoxes,
    int32_t* __restrict__ candClasses, int32_t* __restrict__ numDetections, void* __restrict__ outBoxes,
    void* __restrict__ outScores, int32_t* __restrict__ outClasses)
{
    __shared__ unsigned char alive[kRotatedNmsMaxTopK];
    int32_t const b = blockIdx.x;
    int32_t const tid = threadIdx.x;
    int32_t const stride = blockDim.x;
    int32_t const M = min(counts[b], p.topK);
    int32_t const T = p.topK;
    uint64_t const* keys = sortedKeys + (int64_t) b * perImage;
    float* cx = candBoxes + (int64_t) b * T * kRotatedBoxValues;
    float* cy = cx + T;
    float* cw = cy + T;
    float* ch = cw + T;
    float* ca = ch + T;
    int32_t* cc = candClasses + (int64_t) b * T;

    for (int32_t j = tid; j < M; j += stride)
    {
        CandidateRef const r = decodeCandidate(p, keys[j]);
        RotatedBox<float> const box = loadRotatedBox(boxes, type, b, r.box, p.numBoxes);
        cx[j] = box.cx;
        cy[j] = box.cy;
        cw[j] = box.w;
        ch[j] = box.h;
        ca[j] = box.angle;
        cc[j] = r.cls;
        alive[j] = 1;
    }

    int32_t kept = 0;
    int64_t const K = p.maxOutputBoxes;
    for (int32_t i = 0; i < M; ++i)
    {
        __syncthreads(); // gathered candidates and the previous iteration's flags are visible to the block
        if (!alive[i])
        {
            continue; // uniform across the block
        }
        if (kept >= K)
        {
            break; // uniform: every thread counts kept boxes identically
        }
        RotatedBox<float> const boxI{cx[i], cy[i], cw[i], ch[i], ca[i]};
        int32_t const clsI = cc[i];
        if (tid == 0)
        {
            CandidateRef const ri = decodeCandidate(p, keys[i]);
            int64_t const o = (int64_t) b * K + kept;
            int64_t const src = ((int64_t) b * p.numBoxes + ri.box) * kRotatedBoxValues;
            for (int v = 0; v < kRotatedBoxValues; ++v)
            {
                storeFromFloat(outBoxes, type, o * kRotatedBoxValues + v, loadAsFloat(boxes, type, src + v));
            }
            float const raw = loadAsFloat(scores, type, ((int64_t) b * p.numBoxes + ri.box) * p.numClasses + ri.cls);
            storeFromFloat(outScores, type, o, p.scoreActivation ? sigmoidF32(raw) : raw);
            outClasses[o] = ri.cls;
        }
        ++kept;
#pragma unroll 1
        for (int32_t j = i + 1 + tid; j < M; j += stride)
        {
            if (alive[j] && (p.classAgnostic || cc[j] == clsI))
            {
                RotatedBox<float> const boxJ{cx[j], cy[j], cw[j], ch[j], ca[j]};
                if (rotatedIoU<float>(boxI, boxJ) >= p.iouThreshold)
                {
                    alive[j] = 0;
                }
            }
        }
    }
    if (tid == 0)
    {
        numDetections[b] = kept;
    }
}

} // namespace

size_t rotatedNmsWorkspaceSize(int32_t batchSize, int32_t numBoxes, int32_t numClasses)
{
    // sized for the largest top-k, so that one workspace size fits every attribute value
    return layoutFor(batchSize, numBoxes, numClasses, kRotatedNmsMaxTopK).total;
}

cudaError_t rotatedNmsLaunch(RotatedNmsParams const& attrs, NmsDataType type, void const* boxes, void const* scores,
    int32_t* numDetections, void* outBoxes, void* outScores, int32_t* outClasses, void* workspace,
    size_t workspaceSize, cudaStream_t stream)
{
    if (validateRotatedNmsParams(attrs) != nullptr)
    {
        return cudaErrorInvalidValue;
    }
    RotatedNmsParams p = attrs;
    finalizeRotatedNmsParams(p, type);
    size_t const elem = type == NmsDataType::kFLOAT16 ? 2 : 4;
    size_t const K = (size_t) p.maxOutputBoxes;
    size_t const B = (size_t) p.batchSize;
    cudaError_t err;
    if ((err = cudaMemsetAsync(numDetections, 0, B * sizeof(int32_t), stream)) != cudaSuccess
        || (err = cudaMemsetAsync(outBoxes, 0, B * K * kRotatedBoxValues * elem, stream)) != cudaSuccess
        || (err = cudaMemsetAsync(outScores, 0, B * K * elem, stream)) != cudaSuccess
        || (err = cudaMemsetAsync(outClasses, 0, B * K * sizeof(int32_t), stream)) != cudaSuccess)
    {
        return err;
    }
    int64_t const perImage = (int64_t) p.numBoxes * p.numClasses;
    if (B == 0 || perImage == 0)
    {
        return cudaSuccess;
    }
    WorkspaceLayout const w = layoutFor(p.batchSize, p.numBoxes, p.numClasses, kRotatedNmsMaxTopK);
    if (workspace == nullptr || workspaceSize < w.total)
    {
        return cudaErrorInvalidValue;
    }
    char* ws = static_cast<char*>(workspace);
    int32_t* counts = reinterpret_cast<int32_t*>(ws + w.counts);
    int32_t* begins = reinterpret_cast<int32_t*>(ws + w.begins);
    int32_t* ends = reinterpret_cast<int32_t*>(ws + w.ends);
    uint64_t* keysA = reinterpret_cast<uint64_t*>(ws + w.keysA);
    uint64_t* keysB = reinterpret_cast<uint64_t*>(ws + w.keysB);
    if ((err = cudaMemsetAsync(counts, 0, B * sizeof(int32_t), stream)) != cudaSuccess)
    {
        return err;
    }
    dim3 const filterGrid((unsigned) ((perImage + kFilterThreads - 1) / kFilterThreads), (unsigned) B, 1);
    filterCandidatesKernel<<<filterGrid, kFilterThreads, 0, stream>>>(p, type, scores, counts, keysA, perImage);
    segmentBoundsKernel<<<(unsigned) ((B + 255) / 256), 256, 0, stream>>>(p.batchSize, perImage, counts, begins,
        ends);
    if ((err = cudaGetLastError()) != cudaSuccess)
    {
        return err;
    }
    uint64_t* sorted = nullptr;
    err = sortKeysDescendingSegmented(ws + w.sortTemp, w.sortTempBytes, keysA, keysB, &sorted,
        (int32_t) (perImage * p.batchSize), p.batchSize, begins, ends, stream);
    if (err != cudaSuccess)
    {
        return err;
    }
    int64_t const maxCandidates = perImage < p.topK ? perImage : p.topK;
    int threads = (int) ((maxCandidates + 31) / 32 * 32);
    threads = threads < 64 ? 64 : (threads > kNmsMaxThreads ? kNmsMaxThreads : threads);
    greedyNmsKernel<<<(unsigned) B, threads, 0, stream>>>(p, type, boxes, scores, counts, sorted, perImage,
        reinterpret_cast<float*>(ws + w.candBoxes), reinterpret_cast<int32_t*>(ws + w.candClasses), numDetections,
        outBoxes, outScores, outClasses);
    return cudaGetLastError();
}

} // namespace trtalign
