// One parser for device targets and one for pipeline targets: every call site asks them, none tests prefixes.
#include <gtest/gtest.h>

#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/model_factory.h"
#include "ferry/pipeline_target.h"
#include "ferry/precision.h"

namespace ferry {
namespace {

TEST(DeviceTarget, ParsesEachKindAndKeepsTheSpelling) {
  const struct {
    const char* target;
    DeviceKind kind;
  } ok[] = {{"cpu", DeviceKind::Host},
            {"sim:l4", DeviceKind::Sim},
            {"sim:l4,scale=0.5,h2d=8", DeviceKind::Sim},
            {"cuda", DeviceKind::Cuda},
            {"cuda:1", DeviceKind::Cuda},
            {"cuda,capacity=24GB", DeviceKind::Cuda}};
  for (const auto& c : ok) {
    const std::optional<DeviceTarget> d = parse_device_target(c.target);
    ASSERT_TRUE(d.has_value()) << c.target;
    EXPECT_EQ(d->kind, c.kind) << c.target;
    EXPECT_EQ(d->spec, c.target);
  }
  for (const char* bad : {"", "cudax", "simx", "reference", "gpu", "pipeline:cpu", "CPU"})
    EXPECT_FALSE(parse_device_target(bad).has_value()) << bad;
}

TEST(DeviceTarget, PipelineTargetsAreTheExecutorOnADevice) {
  EXPECT_EQ(pipeline_device("pipeline:cpu")->kind, DeviceKind::Host);
  EXPECT_EQ(pipeline_device("pipeline:sim:l4,scale=2")->spec, "sim:l4,scale=2");
  EXPECT_EQ(pipeline_device("sim:t4")->kind, DeviceKind::Sim);
  EXPECT_EQ(pipeline_device("cuda:0")->kind, DeviceKind::Cuda);
  // `cpu` alone is the cpu target (no executor); the others are no devices at all
  for (const char* not_pipeline : {"cpu", "reference", "pipeline:", "pipeline:bogus", "auto"})
    EXPECT_FALSE(pipeline_device(not_pipeline).has_value()) << not_pipeline;
}

TEST(DeviceTarget, AnUnknownTargetListsTheKnownOnes) {
  try {
    create_device("tpu");
    FAIL() << "tpu was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("known: cpu, sim:"), std::string::npos) << e.what();
  }
}

TEST(PrecisionVocabulary, OneSpellingEverywhere) {
  for (Precision p : {Precision::Bf16, Precision::Int8, Precision::Int4}) {
    EXPECT_EQ(parse_precision(precision_name(p), "test"), p);
    EXPECT_EQ(dtype_name(precision_dtype(p)), precision_name(p));  // the packed dtype is spelled the same
  }
  try {
    parse_precision("fp8", "--expert-dtype");
    FAIL() << "fp8 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--expert-dtype: 'fp8' is not a precision; expected bf16, int8 or int4"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ferry
