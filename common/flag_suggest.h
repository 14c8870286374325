// Suggestions for mistyped command-line flags: the known flag nearest to an unknown one (edit
// distance) and the message that names both, for every kvmesh program; plus the two CLI11 glue
// templates (names of an app's flags, the unknown flag a failed parse left over).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kvmesh {

// Levenshtein distance: insertions, deletions and substitutions cost 1 each.
size_t edit_distance(std::string_view a, std::string_view b);

// The flag of `known` ("--name", "-n") nearest to `given` ("--nmae", "--nmae=3"), or "" when none
// is near: at most max(2, a third of its length) edits away. Ties go to the first in `known`.
std::string closest_flag(std::string_view given, const std::vector<std::string>& known);

// "unknown flag --nmae (did you mean --name?)", or "unknown flag --nmae" when nothing is near.
std::string unknown_flag_message(std::string_view given, const std::vector<std::string>& known);

// The first of `args` that is a flag ("-x...", "--x..."; not "-1"), or "".
std::string first_flag(const std::vector<std::string>& args);

// Every name of every option of a CLI11 app, with its dashes.
template <class App>
std::vector<std::string> cli_flag_names(const App& app) {
  std::vector<std::string> names;
  for (const auto* option : app.get_options()) {
    for (const std::string& n : option->get_lnames()) names.push_back("--" + n);
    for (const std::string& n : option->get_snames()) names.push_back("-" + n);
  }
  return names;
}

// After a CLI11 parse failed: the unknown_flag_message of the first flag it did not expect, or ""
// when the failure was something else.
template <class App>
std::string unknown_cli_flag(const App& app) {
  const std::string flag = first_flag(app.remaining());
  return flag.empty() ? std::string() : unknown_flag_message(flag, cli_flag_names(app));
}

}  // namespace kvmesh
