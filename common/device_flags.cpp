// --device and --dtype: names, defaults per device, and the pairs a device takes.
#include "common/device_flags.h"

#include <string>

namespace kvmesh {

bool parse_device(std::string_view name, DeviceKind* out) {
  if (name == "cpu") {
    *out = DeviceKind::cpu;
    return true;
  }
  if (name == "cuda") {
    *out = DeviceKind::cuda;
    return true;
  }
  return false;
}

const char* device_name(DeviceKind device) { return device == DeviceKind::cuda ? "cuda" : "cpu"; }

Result<DType> resolve_weight_dtype(DeviceKind device, std::optional<DType> requested) {
  const bool cpu = device == DeviceKind::cpu;
  const DType dtype = requested.value_or(cpu ? DType::f32 : DType::bf16);
  const bool ok = cpu ? dtype == DType::f32 || dtype == DType::bf16
                      : dtype == DType::bf16 || dtype == DType::f16;
  if (!ok)
    return invalid_argument(std::string("--dtype ") + dtype_name(dtype) + " is not available with --device " +
                            device_name(device) + " (" + (cpu ? "f32 or bf16" : "bf16 or f16") + ")");
  return dtype;
}

Result<DType> weight_dtype_from_flags(std::string_view device, std::string_view dtype) {
  DeviceKind kind;
  if (!parse_device(device, &kind)) return invalid_argument("--device: unknown device '" + std::string(device) + "'");
  if (dtype == "auto") return resolve_weight_dtype(kind, std::nullopt);
  DType parsed;
  if (!parse_dtype(dtype, &parsed)) return invalid_argument("--dtype: unknown dtype '" + std::string(dtype) + "'");
  return resolve_weight_dtype(kind, parsed);
}

}  // namespace kvmesh
