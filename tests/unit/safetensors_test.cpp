// The safetensors reader: round trip through the writer, and one test per validation error, each on a
// file built to be broken in exactly that way.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "ferry/error.h"
#include "ferry/safetensors.h"
#include "model_fixtures.h"

namespace ferry {
namespace {

using test::TempDir;
using test::write_raw_safetensors;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The message of the ferry::Error that opening `path` throws ("" when it opens).
std::string open_error(const std::filesystem::path& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::byte> bytes_of(const std::vector<float>& v) {
  std::vector<std::byte> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(Safetensors, RoundTripsTensorsAndMetadata) {
  TempDir dir;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> b = {f32_to_bf16(0.5f), f32_to_bf16(-2.0f), f32_to_bf16(3.25f)};
  const std::vector<int64_t> c = {7, -8};
  const std::vector<uint8_t> d = {9};
  std::vector<std::byte> a_bytes = bytes_of(a), b_bytes(6), c_bytes(16), d_bytes(1);
  std::memcpy(b_bytes.data(), b.data(), 6);
  std::memcpy(c_bytes.data(), c.data(), 16);
  std::memcpy(d_bytes.data(), d.data(), 1);
  std::vector<SafetensorsWriteTensor> tensors = {{"b.bf16", DType::BF16, {3}, b_bytes},
                                                 {"d.u8", DType::U8, {1}, d_bytes},
                                                 {"a.f32", DType::F32, {2, 3}, a_bytes},
                                                 {"c.i64", DType::I64, {2}, c_bytes}};
  write_safetensors(dir / "x.safetensors", tensors, {{"format", "pt"}});

  auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_EQ(f->header().header_bytes % 8, 0u);  // padded like the reference writer
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), 4u);
  const SafetensorsTensor& ta = f->at("a.f32");
  EXPECT_EQ(ta.dtype, DType::F32);
  EXPECT_EQ(ta.dtype_name, "F32");
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta.numel(), 6);
  EXPECT_EQ(ta.nbytes(), 24u);
  EXPECT_TRUE(f->is_aligned(ta));
  EXPECT_EQ(std::memcmp(f->aligned(ta).data(), a.data(), 24), 0);
  EXPECT_EQ(std::memcmp(f->raw(f->at("b.bf16")).data(), b.data(), 6), 0);
  EXPECT_EQ(std::memcmp(f->raw(f->at("c.i64")).data(), c.data(), 16), 0);
  EXPECT_EQ(f->at("c.i64").dtype, DType::I64);
  EXPECT_EQ(f->at("d.u8").dtype, DType::U8);
  // The writer orders by element size: every tensor starts aligned.
  for (const auto& t : f->tensors()) EXPECT_TRUE(f->is_aligned(t)) << t.name;
  EXPECT_EQ(f->find("nope"), nullptr);
  EXPECT_THAT([&] { f->at("nope"); }, ::testing::Throws<Error>());
}

TEST(Safetensors, PureParserAgreesWithTheMappedFile) {
  TempDir dir;
  write_raw_safetensors(
      dir / "x.safetensors",
      R"({"t":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}  )", 8);
  std::ifstream in(dir / "x.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SafetensorsHeader h = parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())), "mem");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].dtype, DType::I32);
  EXPECT_EQ(h.data_bytes, 8u);
  EXPECT_EQ(h.metadata.at("k"), "v");
  EXPECT_EQ(h.data_offset(), 8 + h.header_bytes);
}

TEST(Safetensors, ZeroSizedAndScalarTensorsAreValid) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors",
                        R"({"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},
                            "scalar":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
                        4);
  auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_EQ(f->at("empty").numel(), 0);
  EXPECT_EQ(f->at("scalar").numel(), 1);
  EXPECT_TRUE(f->aligned(f->at("empty")).empty());
}

TEST(Safetensors, MisalignedTensorIsCopiedToAnAlignedBuffer) {
  TempDir dir;
  // A 1-byte U8 tensor first puts the F32 tensor at data offset 1: misaligned whatever the header length.
  write_raw_safetensors(dir / "x.safetensors",
                        R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},
                            "w":{"dtype":"F32","shape":[3],"data_offsets":[1,13]}})",
                        13);
  auto f = SafetensorsFile::open(dir / "x.safetensors");
  const SafetensorsTensor& w = f->at("w");
  EXPECT_FALSE(f->is_aligned(w));
  auto raw = f->raw(w);
  auto aligned = f->aligned(w);
  EXPECT_NE(raw.data(), aligned.data());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned.data()) % 4, 0u);
  ASSERT_EQ(aligned.size(), 12u);
  EXPECT_EQ(std::memcmp(raw.data(), aligned.data(), 12), 0);
  // Data bytes are i % 251: the tensor holds bytes 1..12.
  EXPECT_EQ(static_cast<int>(aligned[0]), 1);
  EXPECT_EQ(static_cast<int>(aligned[11]), 12);
  EXPECT_EQ(f->aligned(w).data(), aligned.data());  // copied once
}

TEST(Safetensors, FileShorterThanTheLengthPrefix) {
  TempDir dir;
  test::write_text(dir / "x.safetensors", "abc");
  EXPECT_THAT(open_error(dir / "x.safetensors"), AllOf(HasSubstr((dir / "x.safetensors").string()),
                                                       HasSubstr("fewer than the 8-byte header length")));
  test::write_text(dir / "empty.safetensors", "");
  EXPECT_THAT(open_error(dir / "empty.safetensors"), HasSubstr("has 0 bytes"));
}

TEST(Safetensors, HeaderLengthRunsPastTheEndOfTheFile) {
  TempDir dir;
  std::string bytes(8, '\0');
  bytes[0] = 100;  // N = 100 but only 10 bytes follow
  bytes += "{\"a\":1}   ";
  test::write_text(dir / "x.safetensors", bytes);
  EXPECT_THAT(open_error(dir / "x.safetensors"),
              HasSubstr("header length 100 runs past the end of the file"));
}

TEST(Safetensors, HeaderLargerThanTheLimit) {
  TempDir dir;
  std::string bytes(8, '\0');
  const uint64_t n = 200'000'000;
  std::memcpy(bytes.data(), &n, 8);
  test::write_text(dir / "x.safetensors", bytes + "{}");
  EXPECT_THAT(open_error(dir / "x.safetensors"), HasSubstr("exceeds the limit of 100000000 bytes"));
}

TEST(Safetensors, HeaderThatIsNotAJsonObject) {
  TempDir dir;
  write_raw_safetensors(dir / "a.safetensors", "[1,2,3]", 0);
  EXPECT_THAT(open_error(dir / "a.safetensors"), HasSubstr("the header is not a JSON object"));
  write_raw_safetensors(dir / "b.safetensors", "{\"a\": ", 0);
  EXPECT_THAT(open_error(dir / "b.safetensors"), HasSubstr("the header is not valid JSON"));
  write_raw_safetensors(dir / "c.safetensors", "", 0);
  EXPECT_THAT(open_error(dir / "c.safetensors"), HasSubstr("the header is not a JSON object"));
  write_raw_safetensors(dir / "d.safetensors", R"({"t": 5})", 0);
  EXPECT_THAT(open_error(dir / "d.safetensors"), HasSubstr("tensor 't': header entry is not a JSON object"));
}

TEST(Safetensors, EntryFieldsOfTheWrongType) {
  TempDir dir;
  struct Case {
    const char* header;
    const char* message;
  } cases[] = {
      {R"({"t":{"shape":[1],"data_offsets":[0,4]}})", "no \"dtype\" string"},
      {R"({"t":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "no \"dtype\" string"},
      {R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", "no \"shape\" array"},
      {R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "not a non-negative integer"},
      {R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "not a non-negative integer"},
      {R"({"t":{"dtype":"F32","shape":[1]}})", "\"data_offsets\" must be two non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "\"data_offsets\" must be two"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", "\"data_offsets\" must be two"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", "\"data_offsets\" must be two"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}})", "\"data_offsets\" must be two"},
      {R"({"__metadata__":{"format":5}})", "__metadata__ entry 'format' is not a string"},
      {R"({"__metadata__":[1]})", "__metadata__ is not a JSON object"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const auto path = dir / ("f" + std::to_string(i++) + ".safetensors");
    write_raw_safetensors(path, c.header, 4);
    EXPECT_THAT(open_error(path), HasSubstr(c.message)) << c.header;
  }
}

TEST(Safetensors, UnknownDtypeNamesTheTensorAndTheDtype) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors", R"({"w":{"dtype":"Q4","shape":[8],"data_offsets":[0,4]}})", 4);
  EXPECT_THAT(open_error(dir / "x.safetensors"),
              AllOf(HasSubstr((dir / "x.safetensors").string() + ": tensor 'w': unknown dtype 'Q4'"),
                    HasSubstr("BF16")));
}

TEST(Safetensors, OffsetsBeyondTheDataBuffer) {
  TempDir dir;
  write_raw_safetensors(dir / "model.safetensors",
                        R"({"x":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}})", 32);
  EXPECT_EQ(
      open_error(dir / "model.safetensors"),
      (dir / "model.safetensors").string() +
          ": tensor 'x': data_offsets [0,64] exceed the data buffer of 32 bytes; the file is truncated or "
          "corrupt — re-download it");
}

TEST(Safetensors, TruncatedFile) {
  TempDir dir;
  std::vector<float> v(64, 1.0f);
  auto bytes = bytes_of(v);
  std::vector<SafetensorsWriteTensor> tensors = {{"a", DType::F32, {32}, std::span(bytes).first(128)},
                                                 {"b", DType::F32, {32}, std::span(bytes).subspan(128)}};
  write_safetensors(dir / "x.safetensors", tensors);
  std::filesystem::resize_file(dir / "x.safetensors", std::filesystem::file_size(dir / "x.safetensors") - 10);
  EXPECT_THAT(open_error(dir / "x.safetensors"),
              AllOf(HasSubstr("tensor 'b': data_offsets [128,256] exceed the data buffer of 246 bytes"),
                    HasSubstr("truncated")));
}

TEST(Safetensors, BeginAfterEnd) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors", R"({"x":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4);
  EXPECT_THAT(open_error(dir / "x.safetensors"), HasSubstr("tensor 'x': data_offsets [4,0] begin after end"));
}

TEST(Safetensors, DtypeAndShapeDisagreeWithTheByteCount) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors", R"({"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
                        20);
  EXPECT_THAT(
      open_error(dir / "x.safetensors"),
      HasSubstr("tensor 'x': dtype F32 with shape [2,3] needs 6 x 4 bytes but data_offsets [0,20] hold 20"));
  // BF16 data described as F32: half the bytes the shape needs.
  write_raw_safetensors(dir / "y.safetensors", R"({"y":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})",
                        8);
  EXPECT_THAT(open_error(dir / "y.safetensors"), HasSubstr("needs 4 x 4 bytes"));
}

TEST(Safetensors, ShapeWhoseElementCountOverflows) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors",
                        R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})",
                        0);
  EXPECT_THAT(open_error(dir / "x.safetensors"), HasSubstr("more than 2^64"));
  // numel fits in 64 bits but numel * 4 does not.
  write_raw_safetensors(dir / "y.safetensors",
                        R"({"y":{"dtype":"F32","shape":[4611686018427387904,2],"data_offsets":[0,0]}})", 0);
  EXPECT_THAT(open_error(dir / "y.safetensors"), HasSubstr("tensor 'y': dtype F32"));
}

TEST(Safetensors, OverlappingOffsets) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors",
                        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                            "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        12);
  EXPECT_THAT(open_error(dir / "x.safetensors"),
              HasSubstr("tensor 'b': data_offsets [4,12] overlap tensor 'a' [0,8]"));
}

TEST(Safetensors, GapBetweenTensors) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors",
                        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                            "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                        12);
  EXPECT_THAT(
      open_error(dir / "x.safetensors"),
      HasSubstr(
          "tensor 'b': data_offsets [8,12] leave a gap: bytes [4,8) of the data buffer belong to no tensor"));
  // A gap at the start of the buffer.
  write_raw_safetensors(dir / "y.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                        8);
  EXPECT_THAT(open_error(dir / "y.safetensors"), HasSubstr("bytes [0,4)"));
}

TEST(Safetensors, BytesAfterTheLastTensor) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                        9);
  EXPECT_THAT(open_error(dir / "x.safetensors"),
              HasSubstr("the data buffer has 9 bytes but the tensors cover only 4"));
}

TEST(Safetensors, DuplicateTensorNames) {
  TempDir dir;
  write_raw_safetensors(dir / "x.safetensors",
                        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                            "a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                        8);
  EXPECT_THAT(open_error(dir / "x.safetensors"), HasSubstr("tensor 'a' appears twice in the header"));
}

TEST(Safetensors, NonexistentFile) {
  TempDir dir;
  EXPECT_THAT(open_error(dir / "missing.safetensors"),
              AllOf(HasSubstr("missing.safetensors"), HasSubstr("cannot open")));
}

}  // namespace
}  // namespace ferry
