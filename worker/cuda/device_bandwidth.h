// Measured device memory bandwidth: a large device-to-device copy timed with events, counting the
// bytes read plus the bytes written. The ceiling decode speed is compared against.
#pragma once

#include "common/status.h"

namespace kvmesh {

// GB/s (1e9 bytes) of a `bytes` copy on `device`, median of several timed repeats after a warm-up.
Result<double> measure_device_copy_gbs(int device, size_t bytes = size_t(2) << 30);

}  // namespace kvmesh
