#pragma once
// Model names: built-in aliases for the VoxCPM releases, aliases from the config, and repo ids.

#include <map>
#include <string>
#include <vector>

#include "voxd/common/config.hpp"
#include "voxd/common/ids.hpp"

namespace voxd {

struct model_spec {
  repo_id repo;
  std::string revision;
  std::string alias;  // empty when the user named the repo
  std::string key() const { return repo.str() + "@" + revision; }
};

class catalog {
 public:
  explicit catalog(const std::map<std::string, model_alias>& extra);
  // name: alias, "org/name" or "org/name@revision"; revision (if non-empty) overrides.
  result<model_spec> resolve(const std::string& name, const std::string& revision) const;
  // Aliases within a small edit distance of name (or containing it), best first.
  std::vector<std::string> close_matches(const std::string& name) const;

 private:
  std::map<std::string, model_alias> aliases_;
};

std::map<std::string, model_alias> builtin_aliases();

}  // namespace voxd
