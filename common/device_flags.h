// The compute device and the weight dtype as a command line names them (`--device`, `--dtype`),
// checked together; shared by every program's flag parser and the backend factory.
#pragma once

#include <optional>
#include <string_view>

#include "common/status.h"
#include "common/tensor.h"

namespace kvmesh {

enum class DeviceKind { cpu, cuda };

// "cpu" / "cuda"; false for anything else.
bool parse_device(std::string_view name, DeviceKind* out);
const char* device_name(DeviceKind device);

// The dtype a device keeps matrix weights in: `requested`, or by default f32 on the CPU (the
// reference) and bf16 on CUDA. CPU takes f32 or bf16, CUDA bf16 or f16; anything else is an error
// naming the flag.
Result<DType> resolve_weight_dtype(DeviceKind device, std::optional<DType> requested);
// `--device` and `--dtype` ("auto" or a dtype name) as given on a command line, checked together.
Result<DType> weight_dtype_from_flags(std::string_view device, std::string_view dtype);

}  // namespace kvmesh
