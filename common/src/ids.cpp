#include "voxd/common/ids.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace voxd {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

bool valid_name_part(std::string_view part) {
  if (part.empty() || part.size() > 96) return false;
  if (part == "." || part == ".." || part.front() == '-' || part.front() == '.') return false;
  if (part.find("--") != std::string_view::npos)
    return false;  // would be ambiguous in "models--a--b"
  return std::all_of(part.begin(), part.end(), is_name_char);
}

}  // namespace

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

result<repo_id> repo_id::parse(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || text.find('/', slash + 1) != std::string_view::npos)
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' is not a repository id of the form org/name", text));
  if (!valid_name_part(text.substr(0, slash)) || !valid_name_part(text.substr(slash + 1)))
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' is not a valid repository id: use letters, digits, '-', "
                                  "'_' and '.', at most 96 characters per part",
                                  text));
  return repo_id(std::string(text));
}

std::string repo_id::cache_dir_name() const {
  const auto slash = value_.find('/');
  return fmt::format("models--{}--{}", value_.substr(0, slash), value_.substr(slash + 1));
}

result<commit_id> commit_id::parse(std::string_view text) {
  if (text.size() != 40 || !is_lower_hex(text))
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' is not a 40-hex lowercase commit id", text));
  return commit_id(std::string(text));
}

result<blob_id> blob_id::parse(std::string_view text) {
  if ((text.size() != 40 && text.size() != 64) || !is_lower_hex(text))
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' is not a blob id (40-hex git SHA-1 or 64-hex SHA-256)",
                                  text.substr(0, 80)));
  return blob_id(std::string(text));
}

result<std::string> validate_revision(std::string_view rev) {
  if (rev.empty() || rev.size() > 200)
    return make_error(errc::invalid_argument, "revision must be 1 to 200 characters");
  for (std::size_t start = 0; start <= rev.size();) {
    auto end = rev.find('/', start);
    if (end == std::string_view::npos) end = rev.size();
    const auto part = rev.substr(start, end - start);
    if (part.empty() || part == "." || part == "..")
      return make_error(errc::invalid_argument,
                        fmt::format("revision '{}' has an empty, '.' or '..' element", rev));
    start = end + 1;
  }
  for (char c : rev) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f || c == '\\' || c == '~' || c == '^' || c == ':' || c == '?' ||
        c == '*' || c == '[')
      return make_error(errc::invalid_argument,
                        fmt::format("revision '{}' contains a character git refs forbid", rev));
  }
  return std::string(rev);
}

result<std::string> validate_repo_path(std::string_view path) {
  if (path.empty() || path.size() > 4096)
    return make_error(errc::protocol, "file path is empty or longer than 4096 bytes");
  if (path.front() == '/')
    return make_error(errc::protocol, fmt::format("file path '{}' is absolute", path));
  for (std::size_t start = 0; start <= path.size();) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const auto part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || part.size() > 255)
      return make_error(
          errc::protocol,
          fmt::format("file path '{}' has an empty, '.', '..' or over-long element", path));
    start = end + 1;
  }
  for (char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\')
      return make_error(
          errc::protocol,
          fmt::format("file path '{}' contains a control character or backslash", path));
  }
  return std::string(path);
}

}  // namespace voxd
