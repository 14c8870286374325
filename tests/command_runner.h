// Test helper: run a command line through the shell with a time limit and capture its output.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace kvmesh::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `command` (a shell command line) under `timeout`; exit code 124 means it timed out.
inline CommandResult run_command(const std::string& command, int timeout_s = 120) {
  const std::string base = "/tmp/kvmesh_cmd_" + std::to_string(getpid()) + "_" + std::to_string(rand());
  const std::string line = "timeout -k 5 " + std::to_string(timeout_s) + " " + command + " >" + base +
                           ".out 2>" + base + ".err";
  const int status = std::system(line.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text_file(base + ".out");
  r.err = read_text_file(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// mpirun as these tests need it: root allowed, more ranks than cores, quiet.
inline std::string mpirun_prefix(int n_ranks) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(n_ranks) + " ";
}

}  // namespace kvmesh::testing
