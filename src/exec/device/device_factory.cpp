// create_device: `cpu` or `sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps]`; sim_hardware: the profile a
// sim device emulates.
#include <unistd.h>

#include <charconv>

#include "exec/device/stream_device.h"
#include "ferry/error.h"
#include "ferry/exec/sim_hardware.h"
#include "ferry/planner/hardware_profile.h"

#ifdef FERRY_HAVE_CUDA
#include "kernels/cuda_device.h"
#include "kernels/cuda_runtime_info.h"
#endif

namespace ferry {

namespace {

double parse_number(const std::string& target, const std::string& key, const std::string& value) {
  double v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || !(v > 0))
    throw Error("device target '" + target + "': " + key + "=" + value + " is not a positive number");
  return v;
}

}  // namespace

planner::HardwareProfile sim_hardware(const std::string& target) {
  const std::optional<DeviceTarget> d = parse_device_target(target);
  if (!d || d->kind != DeviceKind::Sim) throw Error("'" + target + "' is not a sim device (sim:<profile>[,...])");
  const std::string rest = target.substr(4);
  const std::string profile = rest.substr(0, rest.find(','));
  if (profile.empty()) throw Error("device target '" + target + "': name a hardware profile, e.g. sim:l4");
  planner::HardwareProfile hw = planner::resolve_hardware(profile);
  if (!hw.has_gpu())
    throw Error("device target '" + target + "': hardware profile '" + profile + "' has no GPU to emulate");
  size_t pos = rest.find(',');
  while (pos != std::string::npos) {
    const size_t next = rest.find(',', pos + 1);
    const std::string kv = rest.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq), value = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (key == "scale")
      hw.gpu->capacity_bytes *= parse_number(target, key, value);
    else if (key == "h2d")
      hw.links.h2d_gbps = parse_number(target, key, value);
    else if (key == "d2h")
      hw.links.d2h_gbps = parse_number(target, key, value);
    else
      throw Error("device target '" + target + "': unknown option '" + key + "' (known: scale, h2d, d2h)");
    pos = next;
  }
  hw.name = target;
  return hw;
}

namespace {

std::unique_ptr<Device> create_sim(const std::string& target) {
  const planner::HardwareProfile hw = sim_hardware(target);
  DeviceInfo info;
  info.name = target.substr(0, target.find(','));
  info.asynchronous = true;
  info.capacity_bytes = static_cast<size_t>(hw.gpu->capacity_bytes);
  info.h2d_gbps = hw.links.h2d_gbps;
  info.d2h_gbps = hw.links.d2h_gbps;
  return std::make_unique<exec::StreamDevice>(std::move(info));
}

}  // namespace

// ---- cuda: kernels/cuda_device.h (CUDA builds only) ----

std::optional<DeviceTarget> parse_device_target(const std::string& target) {
  auto starts = [&](const char* prefix) { return target.rfind(prefix, 0) == 0; };
  if (target == "cpu") return DeviceTarget{DeviceKind::Host, target};
  if (starts("sim:")) return DeviceTarget{DeviceKind::Sim, target};
  if (target == "cuda" || starts("cuda:") || starts("cuda,")) return DeviceTarget{DeviceKind::Cuda, target};
  return std::nullopt;
}

bool is_cuda_target(const std::string& target) {
  const std::optional<DeviceTarget> d = parse_device_target(target);
  return d && d->kind == DeviceKind::Cuda;
}

int cuda_device_count(std::string* why_none) {
#ifdef FERRY_HAVE_CUDA
  return cuda::device_count(why_none);
#else
  if (why_none) *why_none = "this build of ferry has no CUDA (built with FERRY_CUDA=OFF)";
  return 0;
#endif
}

namespace {

std::unique_ptr<Device> create_cuda(const std::string& target) {
#ifdef FERRY_HAVE_CUDA
  return std::make_unique<cuda::CudaDevice>(target);
#else
  throw Error("cuda: this build of ferry has no CUDA (built with FERRY_CUDA=OFF); use --target cpu or "
              "sim:<profile>, or rebuild with -DFERRY_CUDA=ON");
#endif
}

}  // namespace

bool is_device_target(const std::string& target) { return parse_device_target(target).has_value(); }

std::unique_ptr<Device> create_device(const std::string& target) {
  if (const std::optional<DeviceTarget> d = parse_device_target(target)) {
    switch (d->kind) {
      case DeviceKind::Host: {
        DeviceInfo info;
        info.name = "cpu";
        info.capacity_bytes =
            static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
        return std::make_unique<exec::StreamDevice>(std::move(info));
      }
      case DeviceKind::Sim: return create_sim(target);
      case DeviceKind::Cuda: return create_cuda(target);
    }
  }
  throw Error("unknown device '" + target +
              "'; known: cpu, sim:<profile>[,scale=X][,h2d=GBps][,d2h=GBps], cuda[:N][,capacity=SIZE][,h2d=GBps]");
}

}  // namespace ferry
