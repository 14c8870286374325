// RecordingBackend: graph capture over any backend by recording op calls and calling them again,
// so a backend without graphs of its own (the CPU one) runs a model's graph path, as tests do.
#pragma once

#include <memory>

#include "worker/backend.h"

namespace kvmesh {

// Wraps `inner`: every op runs on it directly, except between begin_capture and end_capture,
// where ops are recorded with their arguments (views, the layout's address, the pool) and only
// replay runs them. Collectives are not recorded (captures_collectives() is false).
// fail_from_key > 0: recordings of that key or larger fail at end_capture, as a device capture
// can, so tests reach what runs after a failed recording.
std::unique_ptr<Backend> make_recording_backend(std::unique_ptr<Backend> inner, int fail_from_key = 0);

}  // namespace kvmesh
