// Segmented descending sort of 64-bit keys (cub), kept in its own translation unit: cub is by far the slowest part
// of the build, and the NMS kernels can then be compile-tested for every architecture quickly without it.
#ifndef TRTALIGN_ROTATED_NMS_SORT_CUH
#define TRTALIGN_ROTATED_NMS_SORT_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

namespace trtalign
{

//! Temporary storage bytes for sortKeysDescendingSegmented with these sizes.
size_t sortKeysDescendingTempBytes(int32_t numItems, int32_t numSegments);

//! Sort each segment [begins[s], ends[s]) of keysA descending (stable). Uses keysB as the second buffer; *sorted is
//! set to whichever of the two holds the result.
cudaError_t sortKeysDescendingSegmented(void* temp, size_t tempBytes, uint64_t* keysA, uint64_t* keysB,
    uint64_t** sorted, int32_t numItems, int32_t numSegments, int32_t const* begins, int32_t const* ends,
    cudaStream_t stream);

} // namespace trtalign

#endif // TRTALIGN_ROTATED_NMS_SORT_CUH
