// Host (CPU) rotated NMS: literal loops, one image at a time. See rotated_nms_host.h.
#include "rotated_nms_host.h"

#include <algorithm>
#include <vector>

namespace trtalign
{
namespace
{

struct Candidate
{
    float key;      // raw score (sigmoid is monotone, so ordering by the raw score is ordering by probability)
    int32_t index;  // element index: box * C + class
    int32_t box;
    int32_t cls;
};

//! Candidates of one image that pass the threshold, in element order (e = box * C + class).
void collectCandidates(RotatedNmsParams const& p, NmsDataType type, void const* scores, int32_t image,
    std::vector<Candidate>& out)
{
    out.clear();
    int64_t const C = p.numClasses;
    int64_t const base = (int64_t) image * p.numBoxes * C;
    for (int64_t e = 0; e < (int64_t) p.numBoxes * C; ++e)
    {
        int32_t const c = (int32_t) (e % C);
        float const s = loadAsFloat(scores, type, base + e);
        if (c != p.backgroundClass && scorePasses(s, p))
        {
            out.push_back(Candidate{s == 0.0F ? 0.0F : s, (int32_t) e, (int32_t) (e / C), c});
        }
    }
}

} // namespace

int rotatedNmsHost(RotatedNmsParams const& attrs, NmsDataType type, void const* boxes, void const* scores,
    int32_t* numDetections, void* outBoxes, void* outScores, int32_t* outClasses)
{
    if (validateRotatedNmsParams(attrs) != nullptr)
    {
        return -1;
    }
    RotatedNmsParams p = attrs;
    finalizeRotatedNmsParams(p, type);
    int64_t const K = p.maxOutputBoxes;
    std::vector<Candidate> cands;
    std::vector<RotatedBox<float>> candBoxes;
    std::vector<char> suppressed;
    for (int32_t b = 0; b < p.batchSize; ++b)
    {
        // zero padding first
        numDetections[b] = 0;
        for (int64_t k = 0; k < K; ++k)
        {
            for (int v = 0; v < kRotatedBoxValues; ++v)
            {
                storeFromFloat(outBoxes, type, (b * K + k) * kRotatedBoxValues + v, 0.0F);
            }
            storeFromFloat(outScores, type, b * K + k, 0.0F);
            outClasses[b * K + k] = 0;
        }
        collectCandidates(p, type, scores, b, cands);
        // score descending; equal scores keep the lower candidate index first (stable on index order)
        std::stable_sort(cands.begin(), cands.end(),
            [](Candidate const& x, Candidate const& y) { return x.key > y.key; });
        if ((int64_t) cands.size() > p.topK)
        {
            cands.resize(p.topK);
        }
        int32_t const M = (int32_t) cands.size();
        candBoxes.resize(M);
        for (int32_t i = 0; i < M; ++i)
        {
            candBoxes[i] = loadRotatedBox(boxes, type, b, cands[i].box, p.numBoxes);
        }
        suppressed.assign(M, 0);
        int32_t kept = 0;
        for (int32_t i = 0; i < M && kept < K; ++i)
        {
            if (suppressed[i])
            {
                continue;
            }
            int64_t const o = b * K + kept;
            for (int v = 0; v < kRotatedBoxValues; ++v)
            {
                float const val = loadAsFloat(boxes, type, ((int64_t) b * p.numBoxes + cands[i].box) * 5 + v);
                storeFromFloat(outBoxes, type, o * kRotatedBoxValues + v, val);
            }
            float const s = p.scoreActivation ? sigmoidF32(cands[i].key) : cands[i].key;
            storeFromFloat(outScores, type, o, s);
            outClasses[o] = cands[i].cls;
            ++kept;
            for (int32_t j = i + 1; j < M; ++j)
            {
                if (suppressed[j] || (!p.classAgnostic && cands[j].cls != cands[i].cls))
                {
                    continue;
                }
                if (rotatedIoU<float>(candBoxes[i], candBoxes[j]) >= p.iouThreshold)
                {
                    suppressed[j] = 1;
                }
            }
        }
        numDetections[b] = kept;
    }
    return 0;
}

} // namespace trtalign
