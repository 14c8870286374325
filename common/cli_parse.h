// How every kvmesh program turns CLI11's outcome into what it prints: --help is the help text and
// exit 0; a bad flag is one line "<program>: error: ... (see --help)" and exit 2, an unknown one
// naming the nearest known flag. Header-only, for the translation units that already use CLI11.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "common/flag_suggest.h"

namespace kvmesh {

struct CliOutcome {
  int exit_code = -1;  // -1: parsed, run; >= 0: exit with this code after printing `message`
  std::string message;
};

inline CliOutcome parse_cli(CLI::App& app, int argc, const char* const* argv, const std::string& program) {
  CliOutcome out;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out.exit_code = 0;
    out.message = app.help();
  } catch (const CLI::ParseError& e) {
    out.exit_code = 2;
    std::string what = unknown_cli_flag(app);  // "unknown flag --x (did you mean --y?)"
    if (what.empty()) what = e.what();
    for (char& ch : what)
      if (ch == '\n' || ch == '\r') ch = ' ';
    out.message = program + ": error: " + what + " (see --help)";
  }
  return out;
}

}  // namespace kvmesh
