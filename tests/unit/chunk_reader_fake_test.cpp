// The fake chunk reader's injected faults, and what the reader contract makes of them: short reads are
// finished by the reader (the same re-issue code the real readers run), EIO reaches the caller (who may
// retry), a flipped byte reaches the caller's checksum, and latency delays completions.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <climits>

#include "chunk_test_util.h"
#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {
namespace {

constexpr size_t kFileBytes = 256 * kChunkAlign;
const std::filesystem::path kPath = "/store/layer3.bin";

struct FakeWithFile {
  std::unique_ptr<FakeChunkReader> reader = make_fake_reader();
  std::vector<uint8_t> bytes = test::lcg_bytes(kFileBytes);
  int file;
  explicit FakeWithFile(const FakeFaults& faults) {
    reader->add_file(kPath, bytes);
    reader->set_faults(kPath, faults);
    file = reader->open(kPath);
  }
  // One read, submitted and waited for.
  ChunkCompletion read_one(uint64_t offset, size_t n, uint8_t* dst) {
    const ChunkRead r{file, offset, n, dst, 42};
    reader->submit({&r, 1});
    std::vector<ChunkCompletion> done;
    EXPECT_EQ(reader->wait(done, 1), 1u);
    return done.at(0);
  }
};

TEST(ChunkReaderFake, ShortReadsAreFinishedByTheReader) {
  for (size_t step : {size_t{1000}, kChunkAlign, 3 * kChunkAlign + 5}) {
    FakeFaults faults;
    faults.short_read_bytes = step;
    FakeWithFile f(faults);
    AlignedBuffer buf(kFileBytes);
    std::vector<ChunkRead> reads;
    for (size_t off = 0; off < kFileBytes; off += 16 * kChunkAlign)
      reads.push_back({f.file, off, 16 * kChunkAlign, buf.data() + off, off});
    read_all(*f.reader, reads);
    EXPECT_TRUE(std::equal(f.bytes.begin(), f.bytes.end(), buf.data())) << "step " << step;
    EXPECT_GT(f.reader->short_reads(), 0u) << "step " << step;
    EXPECT_EQ(f.reader->bytes_read(), kFileBytes);
  }
}

TEST(ChunkReaderFake, ShortReadThenEndOfFileIsEndOfFile) {
  FakeFaults faults;
  faults.short_read_bytes = 1000;
  FakeWithFile f(faults);
  AlignedBuffer buf(4 * kChunkAlign);
  EXPECT_EQ(f.read_one(kFileBytes - 2 * kChunkAlign, 4 * kChunkAlign, buf.data()).error, kEndOfFile);
  EXPECT_TRUE(std::equal(f.bytes.end() - 2 * kChunkAlign, f.bytes.end(), buf.data()));
}

TEST(ChunkReaderFake, EioOnceThenTheCallersRetrySucceeds) {
  FakeFaults faults;
  faults.eio_at_offset = 40 * kChunkAlign + 123;
  faults.eio_times = 1;
  FakeWithFile f(faults);
  AlignedBuffer buf(8 * kChunkAlign);
  const ChunkCompletion first = f.read_one(36 * kChunkAlign, 8 * kChunkAlign, buf.data());
  EXPECT_EQ(first.tag, 42u);
  EXPECT_EQ(first.error, EIO);
  EXPECT_EQ(f.read_one(36 * kChunkAlign, 8 * kChunkAlign, buf.data()).error, 0);
  EXPECT_TRUE(std::equal(f.bytes.begin() + 36 * kChunkAlign, f.bytes.begin() + 44 * kChunkAlign, buf.data()));
  // A read that does not cover the offset never saw the fault.
  EXPECT_EQ(f.read_one(0, 8 * kChunkAlign, buf.data()).error, 0);
}

TEST(ChunkReaderFake, EioAlwaysMakesReadAllThrowNamingFileAndOffset) {
  FakeFaults faults;
  faults.eio_at_offset = 100 * kChunkAlign;
  faults.eio_times = INT32_MAX;
  FakeWithFile f(faults);
  AlignedBuffer buf(kFileBytes);
  std::vector<ChunkRead> reads;
  for (size_t off = 0; off < kFileBytes; off += 4 * kChunkAlign)
    reads.push_back({f.file, off, 4 * kChunkAlign, buf.data() + off, 0});
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      read_all(*f.reader, reads);
      ADD_FAILURE() << "read_all did not throw";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(kPath.string()), std::string::npos) << msg;
      EXPECT_NE(msg.find("offset " + std::to_string(100 * kChunkAlign)), std::string::npos) << msg;
      EXPECT_NE(msg.find("Input/output error"), std::string::npos) << msg;
    }
    EXPECT_EQ(f.reader->in_flight(), 0u);  // nothing left behind to write into the buffer later
  }
}

TEST(ChunkReaderFake, AFlippedByteReachesTheCallerWhoseChecksumCatchesIt) {
  FakeFaults faults;
  faults.flip_at_offset = 9 * kChunkAlign + 77;
  faults.flip_times = 1;
  faults.short_read_bytes = 3000;  // the flip lands in a re-issued remainder, not the first attempt
  FakeWithFile f(faults);
  const uint64_t want = xxhash64(f.bytes.data() + 8 * kChunkAlign, 4 * kChunkAlign);
  AlignedBuffer buf(4 * kChunkAlign);
  ASSERT_EQ(f.read_one(8 * kChunkAlign, 4 * kChunkAlign, buf.data()).error, 0);  // the read itself succeeds
  EXPECT_EQ(buf.data()[kChunkAlign + 77], f.bytes[9 * kChunkAlign + 77] ^ 0x01);
  EXPECT_NE(xxhash64(buf.data(), buf.size()), want);
  ASSERT_EQ(f.read_one(8 * kChunkAlign, 4 * kChunkAlign, buf.data()).error, 0);  // the retry is clean
  EXPECT_EQ(xxhash64(buf.data(), buf.size()), want);
}

TEST(ChunkReaderFake, LatencyDelaysCompletions) {
  using Clock = std::chrono::steady_clock;
  FakeFaults faults;
  faults.latency_s = 0.05;
  FakeWithFile f(faults);
  AlignedBuffer buf(4 * kChunkAlign);
  std::vector<ChunkRead> reads;
  for (size_t i = 0; i < 4; ++i)
    reads.push_back({f.file, i * kChunkAlign, kChunkAlign, buf.data() + i * kChunkAlign, i});
  const auto t0 = Clock::now();
  f.reader->submit(reads);
  std::vector<ChunkCompletion> done;
  EXPECT_EQ(f.reader->wait(done, 0), 0u);  // not due yet, and nothing was asked for
  EXPECT_EQ(f.reader->in_flight(), 4u);
  EXPECT_EQ(f.reader->wait(done, 4), 4u);
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - t0).count(), 0.05);
  EXPECT_EQ(f.reader->in_flight(), 0u);
  EXPECT_TRUE(std::equal(f.bytes.begin(), f.bytes.begin() + 4 * kChunkAlign, buf.data()));
}

TEST(ChunkReaderFake, OpeningAnUnregisteredPathThrowsLikeAMissingFile) {
  auto reader = make_fake_reader();
  EXPECT_THROW(reader->open("/store/missing.bin"), Error);
}

}  // namespace
}  // namespace ferry::experts
