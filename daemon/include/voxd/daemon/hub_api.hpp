#pragma once
// Pure functions over the Hub's HTTP API: URL building and parsing of the JSON it returns. No I/O,
// so each parser can be fuzzed on its own.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "voxd/common/error.hpp"
#include "voxd/common/ids.hpp"

namespace voxd::hub {

// One file of a model at a commit.
struct manifest_entry {
  std::string path;
  std::uint64_t size = 0;
  std::string blob;  // lfs.oid (SHA-256) for LFS/Xet files, else the git blob SHA-1 (oid)
  bool operator==(const manifest_entry&) const = default;
};

// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
std::string escape_segment(std::string_view s);
// Escapes every segment of a/b/c, keeping the slashes.
std::string escape_path(std::string_view path);

std::string revision_url(std::string_view origin, const repo_id& repo, std::string_view revision);
std::string tree_url(std::string_view origin, const repo_id& repo, const commit_id& commit);
std::string resolve_url(std::string_view origin, const repo_id& repo, const commit_id& commit,
                        std::string_view path);

// GET /api/models/{repo}/revision/{rev} -> the commit ("sha").
result<commit_id> parse_revision(std::string_view body);
// One page of GET /api/models/{repo}/tree/{commit}?recursive=true; directories are skipped.
result<std::vector<manifest_entry>> parse_tree_page(std::string_view body);
// The rel="next" target of a Link header, if any.
std::optional<std::string> parse_link_next(std::string_view link_header);
// Strips W/ and quotes from an ETag value.
std::string normalize_etag(std::string_view etag);
// Resolves a Location header against the URL it came from (absolute, host-relative or relative).
std::string resolve_location(std::string_view base_url, std::string_view location);
// scheme://host[:port] of a URL, lowercase host; used to decide where a token may go.
std::string url_authority(std::string_view url);

}  // namespace voxd::hub
