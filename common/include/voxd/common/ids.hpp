#pragma once
// Strong types for the identifiers that flow through voxd, so a commit can never be passed where
// a blob id is expected. Each parse() validates; the constructors are private to keep that true.

#include <compare>
#include <string>
#include <string_view>

#include "voxd/common/error.hpp"

namespace voxd {

// A Hub repository id "org/name" (models only for now).
class repo_id {
 public:
  static result<repo_id> parse(std::string_view text);
  const std::string& str() const { return value_; }
  // "models--org--name", the directory name in the Hugging Face cache.
  std::string cache_dir_name() const;
  auto operator<=>(const repo_id&) const = default;

 private:
  explicit repo_id(std::string v) : value_(std::move(v)) {}
  std::string value_;
};

// A full 40-hex git commit id, lowercase.
class commit_id {
 public:
  static result<commit_id> parse(std::string_view text);
  const std::string& str() const { return value_; }
  auto operator<=>(const commit_id&) const = default;

 private:
  explicit commit_id(std::string v) : value_(std::move(v)) {}
  std::string value_;
};

enum class blob_kind { sha256, git_sha1 };

// The hub's content id of a file: the SHA-256 of the content (LFS / Xet files, 64 hex) or the git
// blob SHA-1 (regular files, 40 hex). It is also the file name under blobs/.
class blob_id {
 public:
  static result<blob_id> parse(std::string_view text);
  const std::string& str() const { return value_; }
  blob_kind kind() const { return value_.size() == 64 ? blob_kind::sha256 : blob_kind::git_sha1; }
  auto operator<=>(const blob_id&) const = default;

 private:
  explicit blob_id(std::string v) : value_(std::move(v)) {}
  std::string value_;
};

bool is_lower_hex(std::string_view s);

// A revision as the user typed it: a branch, tag, or commit. Validated to be safe in a URL
// path segment (after escaping) and as a relative path under refs/.
result<std::string> validate_revision(std::string_view rev);

// A repository-relative file path from a manifest: no absolute paths, no "." or ".." elements,
// no empty elements, no backslashes or control characters.
result<std::string> validate_repo_path(std::string_view path);

}  // namespace voxd
