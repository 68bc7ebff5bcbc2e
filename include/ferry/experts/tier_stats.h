// What the SSD and DRAM tiers of the routed experts did in a run (ferry/experts/tiered_experts.h), for
// the run's metrics.
#pragma once
#include <cstdint>

namespace ferry::experts {

struct TieredExpertsStats {
  uint64_t hits = 0, misses = 0;                 // acquired experts found resident / read from the store
  uint64_t prefetch_reads = 0, prefetch_hits = 0;  // reads started ahead / those a later acquire used
  uint64_t bytes_read = 0, checksum_retries = 0;
  double stall_seconds = 0;  // time acquire() waited for reads: what the compute lost to the disk
};

}  // namespace ferry::experts
