// cub segmented radix sort for the rotated NMS pipeline. See rotated_nms_sort.cuh.
#include "rotated_nms_sort.cuh"

#include <cub/cub.cuh>

namespace trtalign
{

size_t sortKeysDescendingTempBytes(int32_t numItems, int32_t numSegments)
{
    size_t bytes = 0;
    cub::DoubleBuffer<uint64_t> keys(nullptr, nullptr);
    cub::DeviceSegmentedRadixSort::SortKeysDescending(nullptr, bytes, keys, (int) numItems, (int) numSegments,
        (int32_t const*) nullptr, (int32_t const*) nullptr);
    return bytes;
}

cudaError_t sortKeysDescendingSegmented(void* temp, size_t tempBytes, uint64_t* keysA, uint64_t* keysB,
    uint64_t** sorted, int32_t numItems, int32_t numSegments, int32_t const* begins, int32_t const* ends,
    cudaStream_t stream)
{
    cub::DoubleBuffer<uint64_t> keys(keysA, keysB);
    cudaError_t const err = cub::DeviceSegmentedRadixSort::SortKeysDescending(temp, tempBytes, keys, (int) numItems,
        (int) numSegments, begins, ends, 0, 64, stream);
    *sorted = keys.Current();
    return err;
}

} // namespace trtalign
