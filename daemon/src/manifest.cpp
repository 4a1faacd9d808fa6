#include "voxd/daemon/manifest.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <optional>
#include <set>

namespace voxd {

namespace asio = boost::asio;

struct manifest_resolver::op {
  op(repo_id r, std::string rev, callback c)
      : repo(std::move(r)), revision(std::move(rev)), cb(std::move(c)) {}
  repo_id repo;
  std::string revision;
  callback cb;
  std::vector<std::size_t> order;  // the origins in use when the round began, in config order
  std::size_t turn = 0;            // position in order
  std::size_t origin = 0;          // order[turn]
  int round = 0;
  std::vector<std::string> errors;
  bool any_transient = false;
  std::size_t missing = 0;  // answers saying the repository or revision does not exist
  std::optional<commit_id> commit;
  std::vector<hub::manifest_entry> files;
  std::set<std::string> seen_paths;
  int pages = 0;
};

manifest_resolver::manifest_resolver(asio::io_context& io, http_engine& http, origin_pool& origins,
                                     int rounds, int timeout_s)
    : io_(io), http_(http), origins_(origins), rounds_(rounds), timeout_s_(timeout_s) {}

void manifest_resolver::resolve(const repo_id& repo, const std::string& revision, callback cb) {
  auto o = std::make_shared<op>(repo, revision, std::move(cb));
  o->order = origins_.active();
  o->origin = o->order.front();  // the config guarantees at least one origin
  start_origin(o);
}

void manifest_resolver::get(std::shared_ptr<op> o, std::string url,
                            std::function<void(http_response)> next) {
  http_request req;
  req.url = url;
  req.headers = origins_.auth_headers(o->origin, url);
  req.headers.push_back("Accept: application/json");
  req.stall_timeout_s = timeout_s_;
  req.max_body = 64 << 20;
  http_.submit(std::move(req), [this, next = std::move(next)](http_response r) mutable {
    asio::post(io_, [next = std::move(next), r = std::move(r)]() mutable { next(std::move(r)); });
  });
}

std::optional<manifest_resolver::failure> manifest_resolver::bad_answer(const http_response& r,
                                                                        const std::string& url) {
  if (!r.transport_ok())
    return failure{r.curl_error,
                   r.lasting_failure() ? failure_kind::invalid : failure_kind::transient};
  if (r.status == 429 || r.status >= 500)
    return failure{fmt::format("HTTP {} from {}", r.status, url), failure_kind::transient};
  if (r.status != 200)
    return failure{
        fmt::format("HTTP {} from {}{}", r.status, url,
                    r.status == 401 || r.status == 403
                        ? " (private or gated repository? check the token)"
                        : ""),
        r.status == 401 || r.status == 404 ? failure_kind::missing : failure_kind::invalid};
  return std::nullopt;
}

void manifest_resolver::origin_failed(std::shared_ptr<op> o, failure f) {
  const auto& url = origins_[o->origin].cfg.url;
  o->errors.push_back(fmt::format("{}: {}", url, f.message));
  if (f.kind == failure_kind::missing) ++o->missing;
  if (f.kind == failure_kind::transient) {
    o->any_transient = true;
    origins_.record_failure(o->origin, f.message);
  }
  o->commit.reset();
  o->files.clear();
  o->seen_paths.clear();
  o->pages = 0;
  if (++o->turn < o->order.size()) {
    o->origin = o->order[o->turn];
    start_origin(o);
    return;
  }
  // Every origin failed this round. Transient failures get more rounds, after a pause.
  if (o->any_transient && ++o->round < rounds_) {
    o->order = origins_.active();  // a reload may have changed them
    o->turn = 0;
    o->origin = o->order.front();
    o->any_transient = false;
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(1 << o->round));
    timer->async_wait([this, o, timer](boost::system::error_code) { start_origin(o); });
    return;
  }
  std::string all;
  for (const auto& e : o->errors)
    all += (all.empty() ? "" : "; ") + e;
  const bool all_missing = !o->any_transient && o->missing == o->errors.size();
  // An origin out of reach in the last round may answer later: the queue waits and asks again.
  o->cb(make_error(o->any_transient ? errc::unavailable
                   : all_missing    ? errc::not_found
                                    : errc::download_failed,
                   fmt::format("cannot read the file list of {}@{} from any origin ({})",
                               o->repo.str(), o->revision, all)));
}

void manifest_resolver::start_origin(std::shared_ptr<op> o) {
  const auto url = hub::revision_url(origins_[o->origin].cfg.url, o->repo, o->revision);
  get(o, url, [this, o, url](http_response r) {
    if (auto f = bad_answer(r, url)) return origin_failed(o, std::move(*f));
    auto c = hub::parse_revision(r.body);
    if (!c) return origin_failed(o, {c.err().message, failure_kind::invalid});
    origins_.record_success(o->origin);
    o->commit = *c;
    fetch_tree_page(o, hub::tree_url(origins_[o->origin].cfg.url, o->repo, *o->commit));
  });
}

void manifest_resolver::fetch_tree_page(std::shared_ptr<op> o, std::string page_url) {
  get(o, page_url, [this, o, page_url](http_response pr) {
    if (auto f = bad_answer(pr, page_url)) return origin_failed(o, std::move(*f));
    auto entries = hub::parse_tree_page(pr.body);
    if (!entries) return origin_failed(o, {entries.err().message, failure_kind::invalid});
    for (auto& e : *entries) {
      if (!o->seen_paths.insert(e.path).second)
        return origin_failed(
            o, {fmt::format("the file list names '{}' twice", e.path), failure_kind::invalid});
      o->files.push_back(std::move(e));
    }
    if (o->files.size() > 1'000'000 || ++o->pages > 10'000)
      return origin_failed(o, {"the file list is implausibly long", failure_kind::invalid});
    if (auto next = hub::parse_link_next(pr.header("link")))
      return fetch_tree_page(o, hub::resolve_location(page_url, *next));
    spdlog::info("{}@{} is commit {} with {} files (from {})", o->repo.str(), o->revision,
                 o->commit->str(), o->files.size(), origins_[o->origin].cfg.url);
    o->cb(manifest{*o->commit, std::move(o->files)});
  });
}

}  // namespace voxd
