// The CUDA engine (bf16 weights and KV pages, or f16 ones; fp32 compute) reproduces Hugging Face
// transformers' GPT-2 numbers (tests/data/hf-gpt2-4l32d) within bf16 tolerances (narrow_weights_golden.h):
// log-probs within 0.1 of the fixture (fp32 CPU: 1e-4), greedy tokens identical where HF's margin
// exceeds 0.1; logit edits (bias, bans, penalties) take effect on the device.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <string>

#include "engine_fixture.h"
#include "logit_edit_checks.h"
#include "narrow_weights_golden.h"
#include "worker/cuda/cuda_backend.h"

namespace kvmesh::testing {
namespace {

constexpr double kLogprobTolerance = 0.1;
constexpr double kClearMargin = 0.1;

// The dtype of the weights and of the KV pages.
class CudaHfGolden : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): the CUDA golden test needs one";
    golden_ = load_json_file(hf_fixture_dir() + "/golden.json");
    EngineOptions o;
    o.device = DeviceKind::cuda;
    o.kv_dtype = GetParam();
    o.weight_dtype = GetParam();
    std::string error;
    engine_ = make_engine(hf_fixture_dir(), o, &error);
    ASSERT_NE(engine_, nullptr) << error;
  }
  nlohmann::json golden_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(CudaHfGolden, PromptLogprobs) { expect_golden_prompt_logprobs(*engine_, golden_, kLogprobTolerance); }

TEST_P(CudaHfGolden, GreedyTokensWhereMarginIsClear) {
  expect_golden_greedy(*engine_, golden_, kClearMargin, kLogprobTolerance);
}

// Logit bias, banned stop tokens and penalties, all drawn on the device (sample_rows.cu); two of the
// fixture's cases (each step sorts a 50257-entry row, which the emulated device does slowly).
TEST_P(CudaHfGolden, LogitEditsTakeEffect) { expect_logit_edits_take_effect(*engine_, golden_, 0.02, 2); }

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaHfGolden, ::testing::Values(DType::bf16, DType::f16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(info.param == DType::f16 ? "f16" : "bf16");
                         });

// OPT and GPT-Neo (tests/data/hf-opt-3l32d, hf-opt-untied-2l32d, hf-gptneo-4l32d) in bf16: the
// families' positions, activations, separate q/k/v and LM head, and GPT-Neo's unscaled, windowed
// attention on the device, with pages
// of 4 tokens so that the window of 7 spans pages.
class CudaFamiliesGolden : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << ")";
    const std::string dir = std::string(KVMESH_TEST_DATA_DIR) + "/" + GetParam();
    golden_ = load_json_file(dir + "/golden.json");
    EngineOptions o;
    o.device = DeviceKind::cuda;
    o.kv_dtype = DType::bf16;
    o.weight_dtype = DType::bf16;
    o.block_size = 4;
    std::string error;
    engine_ = make_engine(dir, o, &error);
    ASSERT_NE(engine_, nullptr) << error;
  }
  nlohmann::json golden_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(CudaFamiliesGolden, PromptLogprobs) { expect_golden_prompt_logprobs(*engine_, golden_, kLogprobTolerance); }

TEST_P(CudaFamiliesGolden, GreedyTokensWhereMarginIsClear) {
  expect_golden_greedy(*engine_, golden_, kClearMargin, kLogprobTolerance);
}

INSTANTIATE_TEST_SUITE_P(Families, CudaFamiliesGolden,
                         ::testing::Values("hf-opt-3l32d", "hf-opt-untied-2l32d", "hf-gptneo-4l32d"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace kvmesh::testing
