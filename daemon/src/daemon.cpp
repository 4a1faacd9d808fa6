#include "voxd/daemon/daemon.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>

#include "voxd/common/files.hpp"
#include "voxd/common/units.hpp"
#include "voxd/daemon/bandwidth.hpp"
#include "voxd/daemon/blob_broker.hpp"
#include "voxd/daemon/catalog.hpp"
#include "voxd/daemon/control_api.hpp"
#include "voxd/daemon/control_server.hpp"
#include "voxd/daemon/hash_worker.hpp"
#include "voxd/daemon/http_engine.hpp"
#include "voxd/daemon/manifest.hpp"
#include "voxd/daemon/model_queue.hpp"
#include "voxd/daemon/origins.hpp"
#include "voxd/daemon/registry_client.hpp"
#include "voxd/daemon/reload.hpp"
#include "voxd/daemon/store.hpp"
#include "voxd/daemon/swarm.hpp"

namespace voxd {

namespace asio = boost::asio;
using json = nlohmann::json;

// The wiring: construction order, the io loop, signals, reload and shutdown. What the daemon
// decides lives in its parts: model_queue, bandwidth, control_api, blob_broker.
struct daemon::impl final : model_backend {
  config cfg;
  std::string config_path;
  asio::io_context io;
  asio::signal_set signals{io, SIGTERM, SIGINT, SIGHUP};
  asio::steady_timer tick{io};
  std::chrono::steady_clock::time_point last_tick = std::chrono::steady_clock::now();
  catalog names;
  store st;
  std::unique_ptr<origin_pool> origins;
  std::unique_ptr<http_engine> http;
  std::unique_ptr<hash_worker> hasher;
  std::unique_ptr<manifest_resolver> resolver;
  std::unique_ptr<registry_client> registry;
  std::unique_ptr<swarm> peers;  // null without a registry: no torrents to share
  std::unique_ptr<blob_broker> fetcher;
  std::unique_ptr<control_server> control;
  std::unique_ptr<control_api> api;
  bandwidth bw;
  model_queue queue;
  bool stopping = false;
  int exit_code = 0;

  impl(config c, std::string path)
      : cfg(std::move(c)),
        config_path(std::move(path)),
        names(cfg.models),
        st(cfg.hub_cache, cfg.state_dir),
        bw(cfg, cfg.state_dir + "/settings.json"),
        queue(st, *this, cfg.state_dir + "/models.json", cfg.max_active) {
    queue.set_retry_for(std::chrono::seconds(cfg.retry_for));
    queue.set_space(cfg.store_max_size, cfg.store_min_free);
  }

  // ---- what the model queue asks of the rest ---------------------------------------------

  void resolve(const repo_id& repo, const std::string& revision,
               manifest_resolver::callback done) override {
    resolver->resolve(repo, revision, std::move(done));
  }
  void want(const blob_request& req, const std::string& model) override {
    fetcher->want(req, model, true);
  }
  void unwant(const std::string& model) override { fetcher->unwant(model); }
  void set_active(const std::string& model, bool active) override {
    fetcher->set_active(model, active);
  }
  std::optional<blob_status> blob_status_of(const blob_id& blob) const override {
    return fetcher->status_of(blob);
  }
  // Checking first spares a blocking call into the session for every downloading blob.
  std::optional<swarm_stats> seed_stats(const blob_id& blob) const override {
    if (!peers || !peers->seeding(blob)) return std::nullopt;
    return peers->stats(blob);
  }
  // Without peers nothing is seeded, and the store is not even looked at.
  void seed(const blob_id& blob, const repo_id& repo, std::uint64_t size) override {
    if (peers && st.has_blob(repo, blob, size)) fetcher->seed(blob, repo, size);
  }
  void unseed(const blob_id& blob) override { fetcher->unseed(blob); }
  void broadcast(std::string_view event, const json& body, const std::string& model) override {
    control->broadcast(event, body, model);
  }

  // ---- loop --------------------------------------------------------------------------------

  void on_tick() {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - last_tick).count();
    last_tick = now;
    const auto [done, active] = queue.active_done();
    bw.sample(now, dt, done, active);
    fetcher->set_link_rate(bw.link_rate());
    queue.tick(dt);
    tick.expires_after(std::chrono::milliseconds(500));
    tick.async_wait([this](boost::system::error_code ec) {
      if (!ec && !stopping) on_tick();
    });
  }

  void reload() {
    if (config_path.empty()) {
      spdlog::warn("SIGHUP: started without --config; nothing to reload");
      return;
    }
    sd_notify(0, "RELOADING=1");
    reload_hooks hooks;
    hooks.origins = [this](const std::vector<origin_config>& o) { return origins->reconfigure(o); };
    hooks.accepted = [this](const config& running, const config& next) {
      bw.reconfigure(running, next);
    };
    hooks.applied = [this](const config& running) {
      names = catalog(running.models);
      fetcher->set_policy(running.origin_policy);
      spdlog::set_level(spdlog::level::from_str(running.log_level));
      queue.set_max_active(running.max_active);
      queue.set_retry_for(std::chrono::seconds(running.retry_for));
      queue.set_space(running.store_max_size, running.store_min_free);
    };
    reload_config(config_path, cfg, hooks);
    sd_notify(0, "READY=1");
    queue.schedule();
  }

  void wait_signal() {
    signals.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reload();
        return wait_signal();
      }
      spdlog::info("{} received; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      shutdown();
    });
  }

  void shutdown() {
    if (stopping) return;
    stopping = true;
    queue.stop();
    sd_notify(0, "STOPPING=1");
    control->close();
    fetcher->shutdown();
    if (peers) peers->stop();
    queue.save();
    bw.save();
    tick.cancel();
    signals.cancel();
    http->stop();
    hasher->stop();
    io.stop();
  }

  int run() {
    if (auto s = st.init(); !s) {
      spdlog::critical("{}", s.err().message);
      return static_cast<int>(s.err().code);
    }
    auto pool = origin_pool::make(cfg.origins);
    if (!pool) {
      spdlog::critical("{}", pool.err().message);
      return static_cast<int>(errc::config);
    }
    origins = std::make_unique<origin_pool>(std::move(*pool));
    http = std::make_unique<http_engine>();
    hasher = std::make_unique<hash_worker>();
    resolver = std::make_unique<manifest_resolver>(io, *http, *origins, cfg.max_attempts_per_origin,
                                                   cfg.http_timeout);
    fetch_settings fs{cfg.connections_per_origin, cfg.chunk_size, cfg.min_split_size,
                      cfg.max_attempts_per_origin, cfg.http_timeout};
    std::string registry_token;
    if (!cfg.registry_token_file.empty()) {
      auto t = read_token_file(cfg.registry_token_file);
      if (!t) {
        spdlog::critical("registry_token_file: {}", t.err().message);
        return static_cast<int>(errc::config);
      }
      registry_token = *t;
    }
    registry = std::make_unique<registry_client>(io, *http, cfg.registry_url(), registry_token,
                                                 cfg.http_timeout);
    if (registry->enabled()) {
      swarm_settings ss{cfg.peer.listen, cfg.peer.lan_discovery, cfg.peer.peers,
                        cfg.tracker,     cfg.lan_uncapped,       cfg.state_dir};
      swarm::events ev;
      ev.finished = [this](const blob_id& b) { fetcher->on_swarm_finished(b); };
      ev.piece_failed = [this](const blob_id& b, int piece) { fetcher->on_piece_failed(b, piece); };
      peers = std::make_unique<swarm>(io, std::move(ss), std::move(ev));
      if (auto s = peers->start(); !s) {
        spdlog::critical("{}", s.err().message);
        return static_cast<int>(s.err().code);
      }
    }
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    broker_settings bs;
    bs.fetch = fs;
    bs.policy = cfg.origin_policy;
    bs.holder = fmt::format("{}/{}", host, cfg.peer.listen);
    fetcher = std::make_unique<blob_broker>(
        io, *http, *hasher, st, *origins, *registry, peers.get(), bs,
        [this](const blob_id& b, const status& s, const blob_outcome& o) {
          queue.on_blob_done(b, s, o);
        });
    control = std::make_unique<control_server>(
        io, cfg.socket,
        [this](control_session& s, const rpc::request& r) { return api->dispatch(s, r); });
    api = std::make_unique<control_api>(cfg, names, queue, bw, *origins, *registry, peers.get());
    bw.load();
    if (auto s = queue.load(); !s) {
      spdlog::critical("{}", s.err().message);
      return static_cast<int>(s.err().code);
    }
    bandwidth::sinks sinks;
    sinks.download = [this](std::uint64_t bps) {
      http->set_download_limit(bps);
      fetcher->set_download_cap(bps);
      if (peers) peers->set_download_limit(bps);
    };
    if (peers) sinks.upload = [this](std::uint64_t bps) { peers->set_upload_limit(bps); };
    bw.attach(std::move(sinks));
    queue.seed_complete();
    if (auto s = control->listen(); !s) {
      spdlog::critical("{}", s.err().message);
      return static_cast<int>(s.err().code);
    }
    wait_signal();
    spdlog::info("voxd-daemon ready: socket {}, store {}, {} origin(s), download cap {}, {}",
                 cfg.socket, cfg.hub_cache, origins->size(), to_string(bw.download_cap()),
                 peers ? fmt::format("peers on {} (tracker {}, registry {}), upload cap {}",
                                     cfg.peer.listen, cfg.tracker.empty() ? "none" : cfg.tracker,
                                     registry->base_url(), to_string(bw.upload_cap()))
                       : std::string("no registry: origins only"));
    sd_notify(0, "READY=1\nSTATUS=ready");
    queue.schedule();
    on_tick();
    io.run();
    spdlog::info("stopped");
    return exit_code;
  }
};

daemon::daemon(config cfg, std::string config_path)
    : impl_(std::make_unique<impl>(std::move(cfg), std::move(config_path))) {}
daemon::~daemon() = default;
int daemon::run() {
  return impl_->run();
}

}  // namespace voxd
