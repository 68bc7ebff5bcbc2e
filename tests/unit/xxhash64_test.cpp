// XXH64 (src/experts/xxhash64.cpp) against the reference implementation. The expected values come from
// the reference python-xxhash package (4.1.0, i.e. xxHash's own C code): xxhash.xxh64(data,
// seed).intdigest().
#include <gtest/gtest.h>

#include <string_view>

#include "chunk_test_util.h"
#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {
namespace {

uint64_t hash_text(std::string_view s, uint64_t seed = 0) {
  return xxhash64(s.data(), s.size(), seed);
}

TEST(Xxhash, PublishedVectors) {
  EXPECT_EQ(hash_text(""), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(hash_text("a"), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(hash_text("abc"), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(xxhash64(nullptr, 0), 0xEF46DB3751D8E999ULL);
}

// Lengths around every boundary of the algorithm: the 1/4/8-byte tail steps and the 32-byte stripes.
// Byte i of the input is (i*31+7) mod 256.
TEST(Xxhash, MatchesReferenceAcrossTailAndStripeBoundaries) {
  struct Case {
    size_t bytes;
    uint64_t seed0, seed12345;
  };
  const Case cases[] = {
      {0, 0xef46db3751d8e999ULL, 0x95584af7701f808dULL},  {1, 0xa96c7f0ce858bbb7ULL, 0x496fc29a1e753bd7ULL},
      {3, 0x56e6957632a487f9ULL, 0x94ff877cd86385beULL},  {4, 0xc60d15b1e3ff8f04ULL, 0x1034b01f61e3b2e6ULL},
      {7, 0xafbefc3d6c6f9a8eULL, 0xd06aa9dbe7add6d1ULL},  {8, 0x3da5c7aa269683e0ULL, 0x23befc2f0d90da1aULL},
      {15, 0xae2a37eb9357caa7ULL, 0x634d78fb3228f038ULL}, {16, 0xa19ad429b02bc413ULL, 0x9383d5f07c7d635aULL},
      {31, 0x4a74f3a1a39ad4a1ULL, 0xbff21e6871cdf167ULL}, {32, 0x8d57d6a4671cc43dULL, 0x7bdfe9fbcc771266ULL},
      {33, 0x62c9fd21ed857664ULL, 0x5a23927b0946b212ULL}, {63, 0x5c320a0d2707057fULL, 0x60148113d74960d3ULL},
      {64, 0x7bbabbc45729d17eULL, 0xeeff42e996f0f7d5ULL}, {100, 0xefa0ad2d3e70c151ULL, 0x4f2e446ab943e539ULL},
  };
  std::vector<uint8_t> data(100);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + 7);
  for (const Case& c : cases) {
    EXPECT_EQ(xxhash64(data.data(), c.bytes), c.seed0) << c.bytes << " bytes";
    EXPECT_EQ(xxhash64(data.data(), c.bytes, 12345), c.seed12345) << c.bytes << " bytes, seed 12345";
  }
}

TEST(Xxhash, MatchesReferenceOnOneMebibyte) {
  const std::vector<uint8_t> data = test::lcg_bytes(size_t{1} << 20);
  EXPECT_EQ(xxhash64(data.data(), data.size()), 0x43c3f32abb9431baULL);
  EXPECT_EQ(xxhash64(data.data(), data.size(), 0xDEADBEEF), 0xd7cb729bc53910a7ULL);
  EXPECT_EQ(xxhash64(data.data(), data.size() - 13), 0x77fef5a3af0e7159ULL);  // a 19-byte tail
}

TEST(Xxhash, OneFlippedBitChangesTheHash) {
  std::vector<uint8_t> data = test::lcg_bytes(8192);
  const uint64_t before = xxhash64(data.data(), data.size());
  data[5000] ^= 0x01;
  EXPECT_NE(xxhash64(data.data(), data.size()), before);
}

}  // namespace
}  // namespace ferry::experts
