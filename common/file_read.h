// read_regular_file: the whole of a small input file (a config, a tokenizer table, an index, a
// request), refusing what is not a regular file before reading a byte, so a FIFO, a device or a
// socket named as input gives an error instead of a hang or an endless read.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kvmesh {

// Errors: not_found (no such file, or a dangling link), invalid_argument (a directory, not a
// regular file, a link loop, or over max_bytes), io_error (cannot open or read). Every message
// starts with the path and names what is there.
Result<std::string> read_regular_file(const std::string& path, uint64_t max_bytes);

// What is at `path`, for an error about a file that cannot be read as a regular file: "a
// directory", "a FIFO", "a character device", "a block device", "a socket", "a dangling symbolic
// link (to 'target')" or "a symbolic link loop"; "" for a regular file (or a link to one) and for
// nothing at all.
std::string non_regular_kind(const std::string& path);

// The error for a file that open() or fstat() refused: names what is there (above) when it is not a
// regular file, else the system's reason. `err` is the errno of the failure (0: fstat said it is
// not a regular file).
Status file_open_error(const std::string& path, int err);

}  // namespace kvmesh
