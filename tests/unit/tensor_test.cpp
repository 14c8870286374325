// Tests of common/tensor: dtype names and sizes, fp16/bf16 <-> fp32 conversions (known values,
// rounding, subnormals, inf, NaN, exhaustive round trips), convert_to_f32 on unaligned input.
#include "common/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace kvmesh {
namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(DType, NamesSizesAndParsing) {
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::i64), 8u);
  EXPECT_STREQ(dtype_name(DType::bf16), "bf16");
  DType d = DType::f32;
  EXPECT_TRUE(parse_dtype("BF16", &d));
  EXPECT_EQ(d, DType::bf16);
  EXPECT_TRUE(parse_dtype("float16", &d));
  EXPECT_EQ(d, DType::f16);
  EXPECT_TRUE(parse_dtype("F32", &d));
  EXPECT_EQ(d, DType::f32);
  EXPECT_FALSE(parse_dtype("f64", &d));
  EXPECT_FALSE(parse_dtype("", &d));
  const int64_t shape[] = {2, 3};
  EXPECT_EQ(shape_string(shape, 2), "[2, 3]");
  EXPECT_EQ(shape_string(shape, 0), "[]");
}

TEST(Half, KnownValues) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(0.5f), 0x3800);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(0.0f), 0x0000);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_to_float(0xc000), -2.0f);
  EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::signbit(half_to_float(0x8000)));
}

TEST(Half, RoundsToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, even stays
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, odd rounds up
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);  // below the halfway point to 65536
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // tie rounds to even = overflow to inf
  EXPECT_EQ(float_to_half(1e6f), 0x7c00);
  EXPECT_EQ(float_to_half(-1e6f), 0xfc00);
}

TEST(Half, Subnormals) {
  const float tiny = std::ldexp(1.0f, -24);  // smallest half subnormal
  EXPECT_EQ(half_to_float(0x0001), tiny);
  EXPECT_EQ(half_to_float(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(half_to_float(0x8001), -tiny);
  EXPECT_EQ(float_to_half(tiny), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(1023.0f, -24)), 0x03ff);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);           // tie to even (zero)
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);  // just above the tie
  EXPECT_EQ(float_to_half(std::ldexp(3.0f, -25)), 0x0002);           // 1.5 ulp: tie to even (2)
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(float_to_half(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(float_to_half(std::ldexp(2047.0f, -25)), 0x0400);  // rounds up into the normals
}

TEST(Half, InfAndNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(float_to_half(inf), 0x7c00);
  EXPECT_EQ(float_to_half(-inf), 0xfc00);
  EXPECT_EQ(half_to_float(0x7c00), inf);
  EXPECT_EQ(half_to_float(0xfc00), -inf);
  EXPECT_TRUE(std::isnan(half_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(half_to_float(0x7c01)));
  const uint16_t h = float_to_half(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(h & 0x7c00, 0x7c00);
  EXPECT_NE(h & 0x03ff, 0);
  EXPECT_NE(float_to_half(from_bits(0x7f800001u)) & 0x03ff, 0);  // payload only in low bits
}

TEST(Half, EveryValueRoundTrips) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    const uint16_t back = float_to_half(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(back))) << std::hex << h;
    } else {
      ASSERT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(BFloat16, KnownValuesAndRounding) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie, even stays
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(bf16_to_float(0x0001), std::ldexp(1.0f, -133));            // subnormal
  EXPECT_EQ(float_to_bf16(std::ldexp(1.0f, -133)), 0x0001);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(float_to_bf16(inf), 0x7f80);
  EXPECT_EQ(float_to_bf16(-inf), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(from_bits(0x7f800001u)))));  // low payload
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(from_bits(0xffffffffu)))));  // no carry to sign
}

TEST(BFloat16, EveryValueRoundTrips) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = bf16_to_float(static_cast<uint16_t>(b));
    EXPECT_EQ(bits_of(f), b << 16);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(f)))) << std::hex << b;
    } else {
      ASSERT_EQ(float_to_bf16(f), b) << std::hex << b;
    }
  }
}

TEST(ConvertToF32, AllFloatDTypesOnUnalignedInput) {
  const std::vector<float> values = {1.0f, -0.5f, 3.25f, 0.0f, 65504.0f};
  std::vector<uint8_t> buf(1 + values.size() * 4);
  std::vector<float> out(values.size());
  std::memcpy(buf.data() + 1, values.data(), values.size() * 4);
  convert_to_f32(buf.data() + 1, DType::f32, out.data(), values.size());
  EXPECT_EQ(out, values);
  for (DType d : {DType::f16, DType::bf16}) {
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t v = d == DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
      std::memcpy(buf.data() + 1 + 2 * i, &v, 2);
    }
    convert_to_f32(buf.data() + 1, d, out.data(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      const float expect = d == DType::f16 ? half_to_float(float_to_half(values[i]))
                                           : bf16_to_float(float_to_bf16(values[i]));
      EXPECT_EQ(out[i], expect) << dtype_name(d) << " " << i;
    }
  }
  EXPECT_EQ(out[2], 3.25f);
}

TEST(TensorView, ShapeAndBytes) {
  float data[6] = {};
  TensorView t = TensorView::of(data, {2, 3});
  EXPECT_EQ(t.rank, 2);
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.dim(1), 3);
  EXPECT_EQ(t.f32(), data);
}

}  // namespace
}  // namespace kvmesh
