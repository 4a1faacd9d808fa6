#pragma once
// Reads a model's commit and file list from whichever origin answers, following tree pagination.

#include <boost/asio/io_context.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "voxd/common/ids.hpp"
#include "voxd/daemon/http_engine.hpp"
#include "voxd/daemon/hub_api.hpp"
#include "voxd/daemon/origins.hpp"

namespace voxd {

struct manifest {
  commit_id commit;
  std::vector<hub::manifest_entry> files;
};

class manifest_resolver {
 public:
  using callback = std::function<void(result<manifest>)>;
  manifest_resolver(boost::asio::io_context& io, http_engine& http, origin_pool& origins,
                    int rounds, int timeout_s);
  // Calls back on the io_context thread.
  void resolve(const repo_id& repo, const std::string& revision, callback cb);

 private:
  struct op;
  void start_origin(std::shared_ptr<op> o);
  void fetch_tree_page(std::shared_ptr<op> o, std::string page_url);
  void get(std::shared_ptr<op> o, std::string url, std::function<void(http_response)> next);
  // transient: try again later (back-off); missing: the repository or revision is not there;
  // invalid: the origin answered something unusable.
  enum class failure_kind { transient, missing, invalid };
  struct failure {
    std::string message;
    failure_kind kind;
  };
  static std::optional<failure> bad_answer(const http_response& r, const std::string& url);
  void origin_failed(std::shared_ptr<op> o, failure f);

  boost::asio::io_context& io_;
  http_engine& http_;
  origin_pool& origins_;
  int rounds_;
  int timeout_s_;
};

}  // namespace voxd
