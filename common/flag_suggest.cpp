// Edit distance and the nearest known flag (flag_suggest.h).
#include "common/flag_suggest.h"

#include <algorithm>
#include <cctype>

namespace kvmesh {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string closest_flag(std::string_view given, const std::vector<std::string>& known) {
  const std::string_view name = given.substr(0, given.find('='));
  const size_t reach = std::max<size_t>(2, name.size() / 3);
  std::string best;
  size_t best_distance = reach + 1;
  for (const std::string& k : known) {
    const size_t d = edit_distance(name, k);
    if (d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  return best;
}

std::string unknown_flag_message(std::string_view given, const std::vector<std::string>& known) {
  const std::string name(given.substr(0, given.find('=')));
  const std::string near = closest_flag(name, known);
  return "unknown flag " + name + (near.empty() ? "" : " (did you mean " + near + "?)");
}

std::string first_flag(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    const size_t dashes = a.rfind("--", 0) == 0 ? 2 : a.rfind('-', 0) == 0 ? 1 : 0;
    if (dashes > 0 && a.size() > dashes && std::isalpha(static_cast<unsigned char>(a[dashes]))) return a;
  }
  return "";
}

}  // namespace kvmesh
