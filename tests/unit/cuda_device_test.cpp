// The cuda target without and with a GPU: target names, `--target auto`, the one-line error without a
// GPU, the target options, and (on a machine with a GPU) the Device contract on CudaDevice: pinned copies
// both ways ordered by events, a Host-stream task after a device event, the no-pageable-copy rule and
// the capacity check.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/model_factory.h"

#ifdef FERRY_HAVE_CUDA
#include "kernels/cuda_device.h"
#endif

namespace ferry {
namespace {

TEST(CudaTarget, NamesAndAutoResolution) {
  EXPECT_TRUE(is_cuda_target("cuda"));
  EXPECT_TRUE(is_cuda_target("cuda:1"));
  EXPECT_TRUE(is_cuda_target("cuda,capacity=24GB"));
  EXPECT_FALSE(is_cuda_target("cudax"));
  EXPECT_FALSE(is_cuda_target("sim:l4"));
  EXPECT_FALSE(is_cuda_target("cpu"));
  std::string why;
  EXPECT_EQ(resolve_target("cpu", &why), "cpu");
  EXPECT_TRUE(why.empty());
  std::string none;
  const int n = cuda_device_count(&none);
  const std::string resolved = resolve_target("auto", &why);
  EXPECT_EQ(resolved, n > 0 ? "cuda" : "cpu");
  EXPECT_NE(why.find("--target auto -> " + resolved), std::string::npos) << why;
  if (n == 0) {
    EXPECT_FALSE(none.empty());
    EXPECT_NE(why.find(none), std::string::npos) << why;
  }
}

TEST(CudaTarget, WithoutAGpuCreationFailsWithOneLine) {
  std::string none;
  if (cuda_device_count(&none) > 0) GTEST_SKIP() << "this machine has a GPU";
  try {
    create_device("cuda");
    FAIL() << "expected an error without a GPU";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("cuda: ", 0), 0u) << msg;
    EXPECT_NE(msg.find("--target cpu"), std::string::npos) << msg;
  }
}

#ifdef FERRY_HAVE_CUDA

TEST(CudaTarget, ParsesSizesAndOptions) {
  EXPECT_EQ(cuda::parse_size("24GB"), size_t{24000000000});
  EXPECT_EQ(cuda::parse_size("512MiB"), size_t{512} << 20);
  EXPECT_EQ(cuda::parse_size("1.5e9"), size_t{1500000000});
  EXPECT_EQ(cuda::parse_size("2GiB"), size_t{2} << 30);
  EXPECT_EQ(cuda::parse_size("100B"), size_t{100});
  for (const char* bad : {"", "abc", "-1GB", "12XB", "GB", "0", "1e30GB"}) EXPECT_THROW(cuda::parse_size(bad), Error) << bad;

  const cuda::CudaTarget t = cuda::parse_cuda_target("cuda:1,capacity=24GB,h2d=12.5");
  EXPECT_EQ(t.ordinal, 1);
  EXPECT_EQ(t.capacity, size_t{24000000000});
  EXPECT_DOUBLE_EQ(t.h2d_gbps, 12.5);
  EXPECT_DOUBLE_EQ(t.d2h_gbps, 0.0);
  const cuda::CudaTarget plain = cuda::parse_cuda_target("cuda");
  EXPECT_EQ(plain.ordinal, 0);
  EXPECT_EQ(plain.capacity, 0u);
  for (const char* bad : {"cuda:x", "cuda:-1", "cuda,speed=3", "cuda,capacity=lots", "cuda,h2d=0", "cudax"})
    EXPECT_THROW(cuda::parse_cuda_target(bad), Error) << bad;
}

TEST(CudaDevice, CopiesEventsAndTheHostStream) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto dev = create_device("cuda,capacity=64MiB");
  EXPECT_EQ(dev->info().capacity_bytes, size_t{64} << 20);
  EXPECT_FALSE(dev->info().host_addressable);
  const size_t n = 1 << 20;
  BufferId src = dev->alloc_host("src", n * sizeof(float));
  BufferId dst = dev->alloc_host("dst", n * sizeof(float));
  BufferId buf = dev->alloc("buf", n * sizeof(float));
  auto* s = static_cast<float*>(dev->data(src));
  auto* d = static_cast<float*>(dev->data(dst));
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<float>(i) * 0.5f;
  std::memset(d, 0, n * sizeof(float));
  EventId loaded = dev->create_event(), back = dev->create_event();
  dev->copy(StreamKind::H2D, {TaskKind::Upload, 0, 0}, buf, src, dev->data(buf), s, n * sizeof(float));
  dev->record(loaded, StreamKind::H2D);
  dev->wait(StreamKind::D2H, loaded);
  dev->copy(StreamKind::D2H, {TaskKind::Logits, 0, 0}, dst, buf, d, dev->data(buf), n * sizeof(float));
  dev->record(back, StreamKind::D2H);
  dev->wait(StreamKind::Host, back);
  bool same = false;
  const BufferAccess reads[] = {{dst, Access::Read}};
  dev->launch(StreamKind::Host, {TaskKind::Attention, 0, 0}, reads,
              [&same, s, d, n] { same = std::memcmp(s, d, n * sizeof(float)) == 0; });
  dev->synchronize();
  EXPECT_TRUE(same);
  const DeviceCounters c = dev->counters();
  EXPECT_EQ(c.bytes[static_cast<int>(StreamKind::H2D)], n * sizeof(float));
  EXPECT_EQ(c.bytes[static_cast<int>(StreamKind::D2H)], n * sizeof(float));
  EXPECT_GT(c.busy_seconds[static_cast<int>(StreamKind::H2D)], 0.0);

  // a small relay copied on the Compute stream (the executor's token ids) lands before the compute work
  // that follows it, and comes back over D2H
  std::memset(d, 0, n * sizeof(float));
  EventId relayed = dev->create_event(), relay_back = dev->create_event();
  dev->copy(StreamKind::Compute, {TaskKind::Upload, 0, 1}, buf, src, dev->data(buf), s, 4096);
  dev->record(relayed, StreamKind::Compute);
  dev->wait(StreamKind::D2H, relayed);
  dev->copy(StreamKind::D2H, {TaskKind::Logits, 0, 1}, dst, buf, d, dev->data(buf), 4096);
  dev->record(relay_back, StreamKind::D2H);
  dev->synchronize(relay_back);
  EXPECT_EQ(std::memcmp(s, d, 4096), 0);

  // a pageable host side is refused, naming the buffer
  std::vector<float> pageable(16);
  try {
    dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 2, 0}, buf, BufferId{}, dev->data(buf), pageable.data(), 64);
    FAIL() << "expected a pageable-copy error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alloc_host"), std::string::npos) << e.what();
  }
  // the capacity is a hard limit, and the error names the buffer
  try {
    dev->alloc("too big", size_t{64} << 20);
    FAIL() << "expected a capacity error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'too big'"), std::string::npos) << e.what();
  }
}

#endif

}  // namespace
}  // namespace ferry
