// read_regular_file: opened without blocking (a FIFO with no writer would hold open() forever),
// checked to be a regular file of at most max_bytes, then read to its end.
#include "common/file_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvmesh {

namespace {

const char* mode_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "";
}

}  // namespace

std::string non_regular_kind(const std::string& path) {
  struct stat link {};
  if (::lstat(path.c_str(), &link) != 0) return "";
  struct stat target {};
  if (::stat(path.c_str(), &target) == 0) return mode_kind(target.st_mode);
  if (!S_ISLNK(link.st_mode)) return "";
  if (errno == ELOOP) return "a symbolic link loop";
  char to[4096];
  const ssize_t n = ::readlink(path.c_str(), to, sizeof to - 1);
  return "a dangling symbolic link (to '" + std::string(to, n > 0 ? static_cast<size_t>(n) : 0) + "')";
}

Status file_open_error(const std::string& path, int err) {
  const std::string kind = non_regular_kind(path);
  if (kind.rfind("a dangling", 0) == 0) return not_found(path + ": is " + kind + ": no such file");
  if (!kind.empty()) return invalid_argument(path + ": is " + kind + ", not a regular file");
  if (err == ENOENT) return not_found(path + ": cannot open: no such file");
  if (err == 0) return invalid_argument(path + ": not a regular file");
  return io_error(path + ": cannot open: " + std::strerror(err));
}

Result<std::string> read_regular_file(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return file_open_error(path, errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io_error(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return file_open_error(path, 0);
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes)
    return invalid_argument(path + ": file is " + std::to_string(size) + " bytes, over the limit of " +
                            std::to_string(max_bytes));
  std::string text(static_cast<size_t>(size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(path + ": read failed: " + std::strerror(errno));
    if (n == 0) break;  // the file shrank while being read
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return text;
}

}  // namespace kvmesh
