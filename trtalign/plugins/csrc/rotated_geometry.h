// Rotated-rectangle geometry shared by the CUDA kernels, the host (CPU) NMS and the C test API.
//
// A rotated box is (cx, cy, w, h, angle) with the angle in radians, counter-clockwise in the usual maths convention
// (x right, y up; in image coordinates with y down it is clockwise, which does not change any area). Any angle is
// accepted (no normalisation to [-pi/2, pi/2) is needed: the corners are computed with cos/sin).
//
// IoU is the exact area of the intersection polygon of the two rectangles over the union area. The intersection is
// found by clipping rectangle A with the four half-planes of rectangle B (Sutherland-Hodgman). Clipping is robust
// to parallel and coincident edges (a vertex on the clip line is kept, no line-line intersection is solved for
// parallel lines) and to zero-area boxes (a side <= 0 gives area 0 and IoU 0 with everything, itself included). Both boxes are first translated so that the
// centre of A is the origin: coordinates then have the magnitude of the box sizes, not of the image, which keeps
// FP32 accurate to about 1e-6 in IoU for boxes anywhere in a large image.
//
// Everything is templated on the scalar type Real (float on the GPU, float or double on the host) and marked
// __host__ __device__ so that the same code is unit-tested on the CPU.
#ifndef TRTALIGN_ROTATED_GEOMETRY_H
#define TRTALIGN_ROTATED_GEOMETRY_H

#include <math.h>

#if defined(__CUDACC__)
#define TRTALIGN_HD __host__ __device__ __forceinline__
#else
#define TRTALIGN_HD inline
#endif

namespace trtalign
{

template <typename Real>
struct RotatedBox
{
    Real cx, cy, w, h, angle;
};

template <typename Real>
struct Point2
{
    Real x, y;
};

TRTALIGN_HD float geomCos(float a) { return cosf(a); }
TRTALIGN_HD float geomSin(float a) { return sinf(a); }
TRTALIGN_HD double geomCos(double a) { return cos(a); }
TRTALIGN_HD double geomSin(double a) { return sin(a); }

//! Area of a rotated box: w * h, and 0 when a side is not positive (TensorRT's BoxCorner::area rule; NaN gives 0).
template <typename Real>
TRTALIGN_HD Real rotatedBoxArea(RotatedBox<Real> const& b)
{
    return (b.w > Real(0) && b.h > Real(0)) ? b.w * b.h : Real(0);
}

//! The four corners of ``b`` in counter-clockwise order, each shifted by (-ox, -oy).
template <typename Real>
TRTALIGN_HD void rotatedBoxCorners(RotatedBox<Real> const& b, Real ox, Real oy, Point2<Real> out[4])
{
    Real const c = geomCos(b.angle);
    Real const s = geomSin(b.angle);
    Real const hw = b.w * Real(0.5);
    Real const hh = b.h * Real(0.5);
    Real const cx = b.cx - ox;
    Real const cy = b.cy - oy;
    // local corners (+hw,+hh), (-hw,+hh), (-hw,-hh), (+hw,-hh) rotated by the angle: counter-clockwise order
    Real const ax = hw * c, ay = hw * s;  // half-width vector
    Real const bx = -hh * s, by = hh * c; // half-height vector
    out[0].x = cx + ax + bx;
    out[0].y = cy + ay + by;
    out[1].x = cx - ax + bx;
    out[1].y = cy - ay + by;
    out[2].x = cx - ax - bx;
    out[2].y = cy - ay - by;
    out[3].x = cx + ax - bx;
    out[3].y = cy + ay - by;
}

//! Signed area (positive when counter-clockwise) of a polygon with n vertices (shoelace formula).
template <typename Real>
TRTALIGN_HD Real polygonSignedArea(Point2<Real> const* p, int n)
{
    Real acc = Real(0);
    for (int i = 0; i < n; ++i)
    {
        int const j = (i + 1 == n) ? 0 : i + 1;
        acc += p[i].x * p[j].y - p[j].x * p[i].y;
    }
    return acc * Real(0.5);
}

//! Clip the convex polygon ``in`` (n vertices) by the half-plane left of the directed edge a->b (points with
//! cross >= 0 are inside). Writes at most n + 1 vertices to ``out`` and returns their count.
template <typename Real>
TRTALIGN_HD int clipPolygonByEdge(Point2<Real> const* in, int n, Point2<Real> a, Point2<Real> b, Point2<Real>* out)
{
    Real const ex = b.x - a.x;
    Real const ey = b.y - a.y;
    int m = 0;
    for (int i = 0; i < n; ++i)
    {
        Point2<Real> const p = in[i];
        Point2<Real> const q = in[(i + 1 == n) ? 0 : i + 1];
        Real const dp = ex * (p.y - a.y) - ey * (p.x - a.x);
        Real const dq = ex * (q.y - a.y) - ey * (q.x - a.x);
        bool const pin = dp >= Real(0);
        if (pin)
        {
            out[m++] = p;
        }
        // The edge p->q strictly crosses the line: the denominators below are non-zero and of one sign, so this
        // never divides by zero, also for edges parallel to the clip line (they never cross it strictly).
        if ((dp > Real(0) && dq < Real(0)) || (dp < Real(0) && dq > Real(0)))
        {
            Real const t = dp / (dp - dq);
            Point2<Real> r;
            r.x = p.x + t * (q.x - p.x);
            r.y = p.y + t * (q.y - p.y);
            out[m++] = r;
        }
    }
    return m;
}

//! Exact intersection area of two rotated rectangles (0 when either has zero area or they do not overlap).
template <typename Real>
TRTALIGN_HD Real rotatedIntersectionArea(RotatedBox<Real> const& a, RotatedBox<Real> const& b)
{
    if (!(rotatedBoxArea(a) > Real(0)) || !(rotatedBoxArea(b) > Real(0)))
    {
        return Real(0); // zero-area or NaN boxes overlap nothing
    }
    // Quick reject with circumscribed circles (squared distances, exact enough; only ever rejects true misses
    // because the radii are enlarged by a relative margin).
    Real const dx = b.cx - a.cx;
    Real const dy = b.cy - a.cy;
    Real const ra = (a.w + a.h) * Real(0.5);
    Real const rb = (b.w + b.h) * Real(0.5);
    Real const rr = (ra + rb) * Real(1.001);
    if (dx * dx + dy * dy > rr * rr)
    {
        return Real(0);
    }
    Point2<Real> pa[4];
    Point2<Real> pb[4];
    rotatedBoxCorners(a, a.cx, a.cy, pa);
    rotatedBoxCorners(b, a.cx, a.cy, pb);
    // A convex 4-gon clipped by 4 half-planes has at most 8 vertices; ping-pong between two buffers.
    Point2<Real> buf0[9];
    Point2<Real> buf1[9];
    for (int i = 0; i < 4; ++i)
    {
        buf0[i] = pa[i];
    }
    int n = 4;
    Point2<Real>* cur = buf0;
    Point2<Real>* nxt = buf1;
    for (int e = 0; e < 4 && n > 0; ++e)
    {
        n = clipPolygonByEdge(cur, n, pb[e], pb[(e + 1) & 3], nxt);
        Point2<Real>* t = cur;
        cur = nxt;
        nxt = t;
    }
    if (n < 3)
    {
        return Real(0);
    }
    Real const area = polygonSignedArea(cur, n);
    return area > Real(0) ? area : Real(0);
}

//! Intersection over union of two rotated rectangles, in [0, 1]. 0 when the union is empty. Two identical boxes of
//! positive area give exactly 1 (rounding would put the ratio a few ulps below 1 in float, above it in double, which
//! decides ``IoU >= 1.0``); the Python reference (trtalign.core.geometry) has the same rule.
template <typename Real>
TRTALIGN_HD Real rotatedIoU(RotatedBox<Real> const& a, RotatedBox<Real> const& b)
{
    if (a.cx == b.cx && a.cy == b.cy && a.w == b.w && a.h == b.h && a.angle == b.angle
        && rotatedBoxArea(a) > Real(0))
    {
        return Real(1);
    }
    Real const inter = rotatedIntersectionArea(a, b);
    if (!(inter > Real(0)))
    {
        return Real(0);
    }
    Real const uni = rotatedBoxArea(a) + rotatedBoxArea(b) - inter;
    if (!(uni > Real(0)))
    {
        return Real(0);
    }
    Real const iou = inter / uni;
    return iou > Real(1) ? Real(1) : (iou < Real(0) ? Real(0) : iou);
}

} // namespace trtalign

#endif // TRTALIGN_ROTATED_GEOMETRY_H
