#pragma once
// The daemon's control API: the method table of the control socket (docs/control-protocol.md),
// one function per method that decodes its parameters and calls the model queue or bandwidth.

#include <chrono>
#include <optional>
#include <span>
#include <string_view>

#include "voxd/common/config.hpp"
#include "voxd/common/protocol.hpp"
#include "voxd/daemon/bandwidth.hpp"
#include "voxd/daemon/catalog.hpp"
#include "voxd/daemon/control_server.hpp"
#include "voxd/daemon/model_queue.hpp"
#include "voxd/daemon/origins.hpp"
#include "voxd/daemon/registry_client.hpp"
#include "voxd/daemon/swarm.hpp"

namespace voxd {

class control_api {
 public:
  // The references outlive the API: they are the daemon's parts and its running config.
  // `peers` is null without a registry.
  control_api(const config& cfg, const catalog& names, model_queue& queue, bandwidth& bw,
              const origin_pool& origins, const registry_client& registry, const swarm* peers);

  // nullopt: no such method.
  std::optional<result<nlohmann::json>> dispatch(control_session& session, const rpc::request& req);

 private:
  using method_fn = result<nlohmann::json> (control_api::*)(control_session&,
                                                            const nlohmann::json&);
  struct method {
    std::string_view name;
    bool changes_state;  // logged with the caller's credentials
    method_fn fn;
  };
  static std::span<const method> methods();

  result<nlohmann::json> m_status(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_ls(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_add(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_pause(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_resume(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_rm(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_path(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_limit(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_peers(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_subscribe(control_session&, const nlohmann::json& p);
  result<nlohmann::json> m_gc(control_session&, const nlohmann::json& p);

  // The model named by the required "model" parameter.
  result<model*> model_param(const nlohmann::json& p);
  nlohmann::json limits_json() const;
  nlohmann::json origins_json() const;

  const config& cfg_;
  const catalog& names_;
  model_queue& queue_;
  bandwidth& bw_;
  const origin_pool& origins_;
  const registry_client& registry_;
  const swarm* peers_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace voxd
