// The chunk readers (include/ferry/experts/chunk_reader.h): io_uring, pread and fake each read a file of
// 1 MiB+ in chunks of several sizes, out of order, several in flight, and must return it byte for byte;
// reads past the end fail with kEndOfFile and read_all names the file; a filesystem that refuses
// O_DIRECT gets a buffered fd. Fault injection lives in chunk_reader_fake_test.cpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <set>

#include "chunk_test_util.h"
#include "experts/chunk_files.h"
#include "ferry/error.h"
#include "ferry/experts/chunk_reader.h"

namespace ferry::experts {
namespace {

constexpr size_t kFileBytes = (size_t{1} << 20) + 17 * kChunkAlign;

// Whether the fd this process holds on `path` was opened O_DIRECT (from /proc/self/fdinfo); nullopt
// when no fd is open on it.
std::optional<bool> open_direct(const std::filesystem::path& path) {
  const auto target = std::filesystem::canonical(path);
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec) != target) continue;
    std::ifstream info("/proc/self/fdinfo/" + e.path().filename().string());
    std::string key, value;
    while (info >> key >> value)
      if (key == "flags:") return (std::stoul(value, nullptr, 8) & O_DIRECT) != 0;
  }
  return std::nullopt;
}

// Chunks covering [0, bytes) in sizes of 1 to 16 pages, shuffled.
std::vector<ChunkRead> shuffled_chunks(int file, size_t bytes, uint8_t* dst) {
  std::mt19937 rng(7);
  std::vector<ChunkRead> reads;
  for (size_t off = 0; off < bytes;) {
    size_t n = std::min(bytes - off, kChunkAlign * (1 + rng() % 16));
    reads.push_back({file, off, n, dst + off, reads.size()});
    off += n;
  }
  std::shuffle(reads.begin(), reads.end(), rng);
  return reads;
}

std::string param_name(const testing::TestParamInfo<ReaderKind>& p) {
  return std::string(reader_kind_name(p.param));
}

class ChunkReaderKinds : public testing::TestWithParam<ReaderKind> {
 protected:
  void SetUp() override {
    if (GetParam() == ReaderKind::Fake) {
      fake_ = make_fake_reader().release();
      reader_.reset(fake_);
      return;
    }
    try {
      reader_ = make_chunk_reader(GetParam(), /*queue_depth=*/4);  // small, so submit() must wait for slots
    } catch (const Error& e) {
      GTEST_SKIP() << "io_uring is refused on this machine, so the io_uring reader cannot be tested: "
                   << e.what();
    }
  }
  void TearDown() override { refuse_direct_io_for_tests(false); }

  // Puts `bytes` in a file named `name` (on disk, or in the fake) and opens it.
  int add_file(const std::string& name, const std::vector<uint8_t>& bytes) {
    const auto path = dir_.path() / name;
    if (fake_) {
      fake_->add_file(path, bytes);
    } else {
      test::write_file(path, bytes);
    }
    return reader_->open(path);
  }

  // Reads the whole file out of order, at most `window` reads in flight, and checks every byte.
  void read_back_and_compare(int file, const std::vector<uint8_t>& expected, size_t window) {
    AlignedBuffer buf(expected.size());
    std::fill(buf.data(), buf.data() + buf.size(), 0xAA);
    const std::vector<ChunkRead> reads = shuffled_chunks(file, expected.size(), buf.data());
    std::set<uint64_t> tags_seen;
    std::vector<ChunkCompletion> done;
    size_t next = 0, outstanding = 0, max_in_flight = 0;
    const uint64_t bytes_before = reader_->bytes_read();
    while (next < reads.size() || outstanding > 0) {
      size_t n = std::min({window - outstanding, reads.size() - next, size_t{6}});
      reader_->submit(std::span(reads).subspan(next, n));
      next += n;
      outstanding += n;
      max_in_flight = std::max(max_in_flight, reader_->in_flight());
      done.clear();
      size_t got = reader_->wait(done, 2);
      ASSERT_EQ(got, done.size());
      ASSERT_GE(got, std::min<size_t>(2, outstanding));
      outstanding -= got;
      for (const ChunkCompletion& c : done) {
        EXPECT_EQ(c.error, 0) << "tag " << c.tag;
        EXPECT_TRUE(tags_seen.insert(c.tag).second) << "tag " << c.tag << " completed twice";
      }
      ASSERT_EQ(reader_->in_flight(), outstanding);
    }
    EXPECT_EQ(tags_seen.size(), reads.size());
    EXPECT_GT(max_in_flight, 1u);
    EXPECT_EQ(reader_->bytes_read() - bytes_before, expected.size());
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), buf.data())) << "bytes differ";
  }

  test::TempDir dir_;
  std::unique_ptr<ChunkReader> reader_;
  FakeChunkReader* fake_ = nullptr;  // reader_, when it is the fake
};

TEST_P(ChunkReaderKinds, ReadsAFileOutOfOrderWithSeveralInFlight) {
  EXPECT_EQ(reader_->kind(), GetParam());
  const auto bytes = test::lcg_bytes(kFileBytes);
  const int file = add_file("experts.bin", bytes);
  EXPECT_EQ(reader_->path(file), dir_.path() / "experts.bin");
  read_back_and_compare(file, bytes, /*window=*/12);
  EXPECT_EQ(reader_->short_reads(), 0u);
}

TEST_P(ChunkReaderKinds, ServesSeveralFilesAtOnce) {
  const auto a = test::lcg_bytes(64 * kChunkAlign, 1), b = test::lcg_bytes(32 * kChunkAlign, 2);
  const int fa = add_file("a.bin", a), fb = add_file("b.bin", b);
  AlignedBuffer buf_a(a.size()), buf_b(b.size());
  std::vector<ChunkRead> reads = {{fb, 0, b.size(), buf_b.data(), 1}, {fa, 0, a.size(), buf_a.data(), 2}};
  read_all(*reader_, reads);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), buf_a.data()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), buf_b.data()));
}

TEST_P(ChunkReaderKinds, ReadAllKeepsAHugeRequestListBounded) {
  const auto bytes = test::lcg_bytes(kFileBytes);
  const int file = add_file("experts.bin", bytes);
  AlignedBuffer buf(bytes.size());
  std::vector<ChunkRead> reads;
  for (size_t off = 0; off < bytes.size(); off += kChunkAlign)
    reads.push_back({file, off, kChunkAlign, buf.data() + off, 0});  // same tag for all: read_all's own
  std::reverse(reads.begin(), reads.end());
  read_all(*reader_, reads);
  EXPECT_EQ(reader_->in_flight(), 0u);
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), buf.data()));
}

TEST_P(ChunkReaderKinds, AReadPastTheEndFailsWithEndOfFileAndReadAllNamesTheFile) {
  const auto bytes = test::lcg_bytes(64 * kChunkAlign);
  const int file = add_file("short.bin", bytes);
  AlignedBuffer buf(4 * kChunkAlign);
  const std::vector<ChunkRead> reads = {
      {file, 62 * kChunkAlign, 4 * kChunkAlign, buf.data(), 1},  // straddles the end
      {file, 100 * kChunkAlign, kChunkAlign, buf.data(), 2},     // wholly beyond it
  };
  for (const ChunkRead& r : reads) {
    reader_->submit({&r, 1});
    std::vector<ChunkCompletion> done;
    ASSERT_EQ(reader_->wait(done, 1), 1u);
    EXPECT_EQ(done[0].tag, r.tag);
    EXPECT_EQ(done[0].error, kEndOfFile) << "read at " << r.offset;
  }
  EXPECT_TRUE(std::equal(bytes.end() - 2 * kChunkAlign, bytes.end(), buf.data()));  // what there was
  try {
    read_all(*reader_, std::span(reads).first(1));
    ADD_FAILURE() << "read_all did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find((dir_.path() / "short.bin").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset 253952"), std::string::npos) << msg;
    EXPECT_NE(msg.find("file ends"), std::string::npos) << msg;
  }
}

// A file whose size is not a multiple of 4 KiB (not one the store writes): O_DIRECT returns the partial
// last block, and the reader must report the end of the file rather than re-issue an unaligned read.
TEST_P(ChunkReaderKinds, AFileEndingMidBlockReportsEndOfFile) {
  const auto bytes = test::lcg_bytes(16 * kChunkAlign + 100);
  const int file = add_file("odd.bin", bytes);
  AlignedBuffer buf(2 * kChunkAlign);
  const ChunkRead r{file, 15 * kChunkAlign, 2 * kChunkAlign, buf.data(), 9};
  reader_->submit({&r, 1});
  std::vector<ChunkCompletion> done;
  ASSERT_EQ(reader_->wait(done, 1), 1u);
  EXPECT_EQ(done[0].error, kEndOfFile);
  EXPECT_TRUE(std::equal(bytes.begin() + 15 * kChunkAlign, bytes.end(), buf.data()));
}

TEST_P(ChunkReaderKinds, OpeningAMissingFileNamesIt) {
  const auto missing = dir_.path() / "no-such-file.bin";
  try {
    reader_->open(missing);
    ADD_FAILURE() << "open did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(ChunkReader, ChunkReaderKinds,
                         testing::Values(ReaderKind::Uring, ReaderKind::Pread, ReaderKind::Fake), param_name);

// The readers with file descriptors (the fake has none).
class ChunkReaderFdKinds : public ChunkReaderKinds {};

// tmpfs on older kernels (and some FUSE/network filesystems) refuse O_DIRECT: the reader falls back to
// a buffered fd for that file and reads the same bytes. The refusal is simulated, since this machine's
// /tmp may well accept O_DIRECT.
TEST_P(ChunkReaderFdKinds, FallsBackToBufferedReadsWhenODirectIsRefused) {
  refuse_direct_io_for_tests(true);
  const auto bytes = test::lcg_bytes(kFileBytes);
  const int file = add_file("buffered.bin", bytes);
  EXPECT_EQ(open_direct(dir_.path() / "buffered.bin"), std::optional<bool>(false));
  read_back_and_compare(file, bytes, /*window=*/8);
}

INSTANTIATE_TEST_SUITE_P(ChunkReader, ChunkReaderFdKinds,
                         testing::Values(ReaderKind::Uring, ReaderKind::Pread), param_name);

TEST(ChunkReaderFiles, OpensODirectWhereAllowedAndRecordsTheFallback) {
  test::TempDir dir;
  test::write_file(dir.path() / "x.bin", test::lcg_bytes(kChunkAlign));
  {
    ChunkFiles files;
    const ChunkFile& f = files.at(files.open(dir.path() / "x.bin"));
    EXPECT_EQ(open_direct(f.path), std::optional<bool>(f.direct));  // whichever this /tmp allows
  }
  refuse_direct_io_for_tests(true);
  {
    ChunkFiles files;
    const ChunkFile& f = files.at(files.open(dir.path() / "x.bin"));
    EXPECT_FALSE(f.direct);
    EXPECT_EQ(open_direct(f.path), std::optional<bool>(false));
  }
  refuse_direct_io_for_tests(false);
  EXPECT_EQ(open_direct(dir.path() / "x.bin"), std::nullopt);  // closed with the table
}

// An io_uring reader (the test is skipped where io_uring is refused) with a file of kFileBytes open.
class ChunkReaderUring : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      reader = make_chunk_reader(ReaderKind::Uring, 8);
    } catch (const Error& e) {
      GTEST_SKIP() << "io_uring is refused on this machine: " << e.what();
    }
    test::write_file(dir.path() / "f.bin", bytes);
    file = reader->open(dir.path() / "f.bin");
  }
  std::unique_ptr<ChunkReader> reader;
  test::TempDir dir;
  const std::vector<uint8_t> bytes = test::lcg_bytes(kFileBytes);
  int file = 0;
};

TEST_F(ChunkReaderUring, DestroyingTheReaderWithReadsInFlightIsSafe) {
  AlignedBuffer buf(bytes.size());
  const auto reads = shuffled_chunks(file, bytes.size(), buf.data());
  reader->submit(std::span(reads).first(8));
  EXPECT_EQ(reader->in_flight(), 8u);
  reader.reset();  // waits for the eight reads to land in buf before the ring goes
}

TEST_F(ChunkReaderUring, ReadsIntoRegisteredMemoryAndAroundIt) {
  AlignedBuffer fixed(128 * kChunkAlign), plain(128 * kChunkAlign);  // the file's first 256 blocks
  EXPECT_FALSE(reader->register_memory(fixed.data(), fixed.size(), 3 * kChunkAlign));  // not a whole number of units
  const bool registered = reader->register_memory(fixed.data(), fixed.size(), 16 * kChunkAlign);
  if (!registered) std::printf("  (the kernel refused to register the buffers: plain reads were used)\n");
  // the first half of the file into the registered memory, 16-block reads (one unit each), the second
  // half into plain memory
  std::vector<ChunkRead> reads;
  for (size_t off = 0; off < fixed.size(); off += 16 * kChunkAlign)
    reads.push_back({file, off, 16 * kChunkAlign, fixed.data() + off, off});
  for (size_t off = 0; off < plain.size(); off += 16 * kChunkAlign)
    reads.push_back({file, fixed.size() + off, 16 * kChunkAlign, plain.data() + off, 1 + off});
  read_all(*reader, reads);
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(fixed.size()), fixed.data()));
  EXPECT_TRUE(std::equal(bytes.begin() + static_cast<ptrdiff_t>(fixed.size()),
                         bytes.begin() + static_cast<ptrdiff_t>(fixed.size() + plain.size()), plain.data()));
}

TEST(ChunkReaderFactory, AutoGivesARealReaderAndFakeIsRefused) {
  const auto reader = make_chunk_reader(ReaderKind::Auto);
  EXPECT_TRUE(reader->kind() == ReaderKind::Uring || reader->kind() == ReaderKind::Pread);
  EXPECT_EQ(make_chunk_reader(ReaderKind::Pread)->kind(), ReaderKind::Pread);
  EXPECT_THROW(make_chunk_reader(ReaderKind::Fake), Error);
  EXPECT_EQ(make_fake_reader()->kind(), ReaderKind::Fake);
}

TEST(ChunkReaderKind, NamesRoundTripAndAnUnknownNameListsTheChoices) {
  for (ReaderKind k : {ReaderKind::Auto, ReaderKind::Uring, ReaderKind::Pread, ReaderKind::Fake})
    EXPECT_EQ(parse_reader_kind(reader_kind_name(k)), k);
  EXPECT_EQ(reader_kind_name(ReaderKind::Uring), "io_uring");
  try {
    parse_reader_kind("mmap");
    ADD_FAILURE() << "parse_reader_kind accepted 'mmap'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const char* choice : {"'mmap'", "auto", "io_uring", "pread"})
      EXPECT_NE(msg.find(choice), std::string::npos) << msg;
  }
}

TEST(ChunkReaderBuffer, IsAlignedAndMoves) {
  AlignedBuffer a(10000);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % kChunkAlign, 0u);
  EXPECT_EQ(a.size(), 10000u);
  uint8_t* p = a.data();
  AlignedBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  a = std::move(b);
  EXPECT_EQ(a.data(), p);
  EXPECT_EQ(AlignedBuffer().data(), nullptr);
}

}  // namespace
}  // namespace ferry::experts
