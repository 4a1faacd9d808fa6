#include "voxd/daemon/hub_api.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <set>

namespace voxd::hub {
namespace {

using json = nlohmann::json;

std::string_view trim_slash(std::string_view s) {
  while (!s.empty() && s.back() == '/')
    s.remove_suffix(1);
  return s;
}

}  // namespace

std::string escape_segment(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0xf];
    }
  }
  return out;
}

std::string escape_path(std::string_view path) {
  std::string out;
  std::size_t start = 0;
  for (;;) {
    const auto end = path.find('/', start);
    out += escape_segment(path.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    out += '/';
    start = end + 1;
  }
  return out;
}

std::string revision_url(std::string_view origin, const repo_id& repo, std::string_view revision) {
  return fmt::format("{}/api/models/{}/revision/{}", trim_slash(origin), repo.str(),
                     escape_segment(revision));
}

std::string tree_url(std::string_view origin, const repo_id& repo, const commit_id& commit) {
  return fmt::format("{}/api/models/{}/tree/{}?recursive=true&expand=false", trim_slash(origin),
                     repo.str(), commit.str());
}

std::string resolve_url(std::string_view origin, const repo_id& repo, const commit_id& commit,
                        std::string_view path) {
  return fmt::format("{}/{}/resolve/{}/{}", trim_slash(origin), repo.str(), commit.str(),
                     escape_path(path));
}

result<commit_id> parse_revision(std::string_view body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(errc::protocol, "revision answer is not a JSON object");
  const auto it = j.find("sha");
  if (it == j.end() || !it->is_string())
    return make_error(errc::protocol, "revision answer has no string field 'sha'");
  auto c = commit_id::parse(it->get<std::string>());
  if (!c) return make_error(errc::protocol, fmt::format("revision answer: {}", c.err().message));
  return c;
}

result<std::vector<manifest_entry>> parse_tree_page(std::string_view body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_array())
    return make_error(errc::protocol, "tree answer is not a JSON array");
  std::vector<manifest_entry> out;
  for (const auto& e : j) {
    if (!e.is_object()) return make_error(errc::protocol, "tree entry is not an object");
    const auto type = e.find("type");
    const auto path = e.find("path");
    if (type == e.end() || !type->is_string() || path == e.end() || !path->is_string())
      return make_error(errc::protocol, "tree entry lacks string fields 'type' and 'path'");
    const auto& t = type->get_ref<const std::string&>();
    if (t == "directory") continue;
    const auto& p = path->get_ref<const std::string&>();
    if (t != "file")
      return make_error(errc::protocol, fmt::format("tree entry '{}' has unknown type '{}'", p, t));
    auto vp = validate_repo_path(p);
    if (!vp) return make_error(errc::protocol, fmt::format("tree entry: {}", vp.err().message));
    manifest_entry m;
    m.path = *vp;
    const auto read_size = [&](const json& obj, const char* what) -> result<std::uint64_t> {
      auto const s = obj.find("size");
      if (s == obj.end() || !s->is_number_unsigned())
        return make_error(errc::protocol,
                          fmt::format("tree entry '{}': {} size is missing or negative", p, what));
      return s->get<std::uint64_t>();
    };
    std::string blob;
    if (auto lfs = e.find("lfs"); lfs != e.end() && !lfs->is_null()) {
      if (!lfs->is_object())
        return make_error(errc::protocol, fmt::format("tree entry '{}': lfs is not an object", p));
      const auto oid = lfs->find("oid");
      if (oid == lfs->end() || !oid->is_string())
        return make_error(errc::protocol, fmt::format("tree entry '{}': lfs.oid is missing", p));
      blob = oid->get<std::string>();
      auto size = read_size(*lfs, "lfs");
      if (!size) return size.err();
      m.size = *size;
      if (blob.size() != 64)
        return make_error(errc::protocol,
                          fmt::format("tree entry '{}': lfs.oid '{}' is not a SHA-256", p, blob));
    } else {
      const auto oid = e.find("oid");
      if (oid == e.end() || !oid->is_string())
        return make_error(errc::protocol, fmt::format("tree entry '{}': oid is missing", p));
      blob = oid->get<std::string>();
      auto size = read_size(e, "file");
      if (!size) return size.err();
      m.size = *size;
      if (blob.size() != 40)
        return make_error(errc::protocol,
                          fmt::format("tree entry '{}': oid '{}' is not a git SHA-1", p, blob));
    }
    auto b = blob_id::parse(blob);
    if (!b)
      return make_error(errc::protocol, fmt::format("tree entry '{}': {}", p, b.err().message));
    m.blob = b->str();
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<std::string> parse_link_next(std::string_view header) {
  // Link: <url>; rel="next", <url2>; rel="prev"
  std::size_t pos = 0;
  while (pos < header.size()) {
    const auto lt = header.find('<', pos);
    if (lt == std::string_view::npos) return std::nullopt;
    const auto gt = header.find('>', lt);
    if (gt == std::string_view::npos) return std::nullopt;
    const auto url = header.substr(lt + 1, gt - lt - 1);
    auto next = header.find('<', gt);
    const auto params = header.substr(
        gt + 1, next == std::string_view::npos ? std::string_view::npos : next - gt - 1);
    if (params.find("rel=\"next\"") != std::string_view::npos ||
        params.find("rel=next") != std::string_view::npos)
      return std::string(url);
    if (next == std::string_view::npos) return std::nullopt;
    pos = next;
  }
  return std::nullopt;
}

std::string normalize_etag(std::string_view etag) {
  while (!etag.empty() && etag.front() == ' ')
    etag.remove_prefix(1);
  if (etag.rfind("W/", 0) == 0) etag.remove_prefix(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
    etag = etag.substr(1, etag.size() - 2);
  return std::string(etag);
}

std::string url_authority(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  const auto host_end = url.find_first_of("/?#", scheme_end + 3);
  std::string out(url.substr(0, host_end));
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string resolve_location(std::string_view base_url, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return std::string(location);
  const auto authority = url_authority(base_url);
  if (!location.empty() && location.front() == '/') {
    if (location.size() > 1 && location[1] == '/')
      return std::string(base_url.substr(0, base_url.find(':') + 1)) + std::string(location);
    return std::string(base_url.substr(0, authority.size())) + std::string(location);
  }
  const auto q = base_url.find('?');
  const auto path_part = base_url.substr(0, q);
  const auto slash = path_part.rfind('/');
  return std::string(path_part.substr(0, slash + 1)) + std::string(location);
}

}  // namespace voxd::hub
