// CUDA part of the C test API: runs the plugin's kernels on host buffers (copies in, launches, copies out, times).
#include "trtalign_capi.h"

#include "rotated_nms_kernels.cuh"
#include "trtalign_capi_internal.h"

#include <cuda_runtime_api.h>

namespace
{

struct DeviceBuffers
{
    void* ptr[6] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
    ~DeviceBuffers()
    {
        for (void* p : ptr)
        {
            if (p != nullptr)
            {
                cudaFree(p);
            }
        }
    }
};

int32_t fail(cudaError_t err)
{
    trtalign::setLastError(cudaGetErrorString(err));
    return -2;
}

} // namespace

extern "C" int32_t trtalign_rotated_nms_cuda(void const* boxes, void const* scores, int32_t dtype, int32_t batch,
    int32_t num_boxes, int32_t num_classes, float score_threshold, float iou_threshold, int32_t max_output_boxes,
    int32_t background_class, int32_t score_activation, int32_t class_agnostic, int32_t box_coding, int32_t top_k,
    int32_t* num_detections, void* out_boxes, void* out_scores, int32_t* out_classes, int32_t repeats,
    float* kernel_ms)
{
    trtalign::NmsRequest r;
    if (!trtalign::makeNmsRequest(dtype, batch, num_boxes, num_classes, score_threshold, iou_threshold,
            max_output_boxes, background_class, score_activation, class_agnostic, box_coding, top_k, r))
    {
        return -1;
    }
    if (repeats < 1)
    {
        trtalign::setLastError("repeats must be >= 1");
        return -1;
    }
    size_t const elem = dtype == 1 ? 2 : 4;
    size_t const B = (size_t) batch, N = (size_t) num_boxes, C = (size_t) num_classes, K = (size_t) max_output_boxes;
    size_t const sizes[6] = {B * N * 5 * elem, B * N * C * elem, B * sizeof(int32_t), B * K * 5 * elem, B * K * elem,
        B * K * sizeof(int32_t)};
    size_t const wsBytes = trtalign::rotatedNmsWorkspaceSize(batch, num_boxes, num_classes);
    DeviceBuffers d;
    void* ws = nullptr;
    cudaError_t err;
    for (int i = 0; i < 6; ++i)
    {
        if ((err = cudaMalloc(&d.ptr[i], sizes[i] > 0 ? sizes[i] : 1)) != cudaSuccess)
        {
            return fail(err);
        }
    }
    if ((err = cudaMalloc(&ws, wsBytes > 0 ? wsBytes : 1)) != cudaSuccess)
    {
        return fail(err);
    }
    struct WsGuard
    {
        void* p;
        ~WsGuard()
        {
            cudaFree(p);
        }
    } wsGuard{ws};
    if ((sizes[0] && (err = cudaMemcpy(d.ptr[0], boxes, sizes[0], cudaMemcpyHostToDevice)) != cudaSuccess)
        || (sizes[1] && (err = cudaMemcpy(d.ptr[1], scores, sizes[1], cudaMemcpyHostToDevice)) != cudaSuccess))
    {
        return fail(err);
    }
    cudaStream_t stream;
    if ((err = cudaStreamCreate(&stream)) != cudaSuccess)
    {
        return fail(err);
    }
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    // one warm-up run, then `repeats` timed runs; the outputs of the last run are returned
    auto const launch = [&]() {
        return trtalign::rotatedNmsLaunch(r.params, r.type, d.ptr[0], d.ptr[1], (int32_t*) d.ptr[2], d.ptr[3],
            d.ptr[4], (int32_t*) d.ptr[5], ws, wsBytes, stream);
    };
    err = launch();
    if (err == cudaSuccess)
    {
        cudaEventRecord(start, stream);
        for (int run = 0; run < repeats && err == cudaSuccess; ++run)
        {
            err = launch();
        }
        cudaEventRecord(stop, stream);
    }
    if (err == cudaSuccess)
    {
        err = cudaStreamSynchronize(stream);
    }
    float ms = 0.0F;
    if (err == cudaSuccess)
    {
        cudaEventElapsedTime(&ms, start, stop);
        if (kernel_ms != nullptr)
        {
            *kernel_ms = ms / (float) repeats;
        }
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
    if (err != cudaSuccess)
    {
        return fail(err);
    }
    void* outs[4] = {num_detections, out_boxes, out_scores, out_classes};
    for (int i = 0; i < 4; ++i)
    {
        if (sizes[2 + i] && (err = cudaMemcpy(outs[i], d.ptr[2 + i], sizes[2 + i], cudaMemcpyDeviceToHost)) != cudaSuccess)
        {
            return fail(err);
        }
    }
    return 0;
}
