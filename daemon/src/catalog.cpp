#include "voxd/daemon/catalog.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace voxd {
namespace {

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::map<std::string, model_alias> builtin_aliases() {
  return {
      {"voxcpm-1.5", {"openbmb/VoxCPM1.5", "main"}},
      {"voxcpm-0.5b", {"openbmb/VoxCPM-0.5B", "main"}},
      {"voxcpm2", {"openbmb/VoxCPM2", "main"}},
  };
}

catalog::catalog(const std::map<std::string, model_alias>& extra) : aliases_(builtin_aliases()) {
  for (const auto& [k, v] : extra)
    aliases_[k] = v;
}

result<model_spec> catalog::resolve(const std::string& name, const std::string& revision) const {
  if (name.empty()) return make_error(errc::invalid_argument, "no model named");
  std::string base = name, rev;
  if (auto at = name.find('@'); at != std::string::npos) {
    base = name.substr(0, at);
    rev = name.substr(at + 1);
  }
  if (!revision.empty()) rev = revision;
  if (auto it = aliases_.find(base); it != aliases_.end()) {
    auto repo = repo_id::parse(it->second.repo);
    if (!repo) return repo.err();
    auto r = validate_revision(rev.empty() ? it->second.revision : rev);
    if (!r) return r.err();
    return model_spec{*repo, *r, base};
  }
  if (base.find('/') != std::string::npos) {
    auto repo = repo_id::parse(base);
    if (!repo) return repo.err();
    auto r = validate_revision(rev.empty() ? "main" : rev);
    if (!r) return r.err();
    return model_spec{*repo, *r, ""};
  }
  const auto matches = close_matches(base);
  std::string hint;
  if (!matches.empty()) {
    hint = "; did you mean ";
    for (std::size_t i = 0; i < matches.size(); ++i)
      hint += (i ? ", " : "") + matches[i];
    hint += "?";
  } else {
    hint = "; known aliases: ";
    std::size_t i = 0;
    for (const auto& [k, v] : aliases_)
      hint += (i++ ? ", " : "") + k;
    hint += ", or name a repository as org/name";
  }
  return make_error(errc::not_found, fmt::format("unknown model '{}'{}", base, hint));
}

std::vector<std::string> catalog::close_matches(const std::string& name) const {
  const auto n = lower(name);
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& [alias, m] : aliases_) {
    const auto a = lower(alias);
    const auto d = std::min(edit_distance(n, a), edit_distance(n, lower(m.repo)));
    const bool contains = !n.empty() && (a.find(n) != std::string::npos ||
                                         lower(m.repo).find(n) != std::string::npos);
    if (d <= std::max<std::size_t>(2, n.size() / 3) || contains)
      scored.emplace_back(contains ? 0 : d, alias);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (const auto& s : scored)
    out.push_back(s.second);
  return out;
}

}  // namespace voxd
