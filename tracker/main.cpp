// voxd-tracker: thin entry point; the tracker lives in the voxd_tracker library.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <iostream>

#include "voxd/tracker/options.hpp"
#include "voxd/tracker/registry.hpp"
#include "voxd/tracker/server.hpp"
#include "voxd/tracker/swarm.hpp"

using namespace voxd::tracker;

namespace {

// The file's settings, then the command line on top.
voxd::status configure(const std::string& path, const tracker_config& cli,
                       const std::vector<std::string>& given, tracker_config& out,
                       std::vector<voxd::config_error>& errors) {
  tracker_config c;
  if (!path.empty())
    if (auto s = load_tracker_config(path, c, errors); !s) return s;
  for (const auto& opt : given) {
    if (opt == "listen") c.server.http_listen = cli.server.http_listen;
    if (opt == "udp") c.server.udp_listen = cli.server.udp_listen;
    if (opt == "data-dir") c.data_dir = cli.data_dir;
    if (opt == "publish-token-file") c.publish_token_file = cli.publish_token_file;
    if (opt == "interval") c.server.interval = cli.server.interval;
    if (opt == "allow-list") c.server.allow_list = cli.server.allow_list;
    if (opt == "passkey") c.server.passkey = cli.server.passkey;
  }
  if (c.server.min_interval > c.server.interval) c.server.min_interval = c.server.interval;
  // A peer that missed about two announces is gone.
  c.limits.expiry_seconds =
      static_cast<std::uint32_t>(2 * c.server.interval + std::min(c.server.interval, 30));
  if (auto s = read_publish_token(c); !s) {
    errors.push_back(
        {path.empty() ? "command line" : path, 0, 0, "publish_token_file", s.err().message});
    return s;
  }
  out = c;
  return voxd::ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"voxd-tracker: BitTorrent tracker (HTTP + UDP) and blob registry for voxd sites"};
  tracker_config cli;
  std::string config_path;
  bool check_only = false;
  app.add_option("--listen", cli.server.http_listen,
                 "HTTP listen address IP:PORT (announce, scrape, registry, metrics)");
  app.add_option("--udp", cli.server.udp_listen,
                 "UDP (BEP 15) listen address IP:PORT; empty to disable");
  app.add_option("--data-dir", cli.data_dir, "Where registered torrents are stored");
  app.add_option("--publish-token-file", cli.publish_token_file,
                 "File holding the bearer token needed to publish");
  app.add_option("--interval", cli.server.interval, "Announce interval in seconds")
      ->check(CLI::Range(2, 86400));
  app.add_flag("--allow-list", cli.server.allow_list,
               "Serve only info-hashes known to the registry");
  app.add_option("--passkey", cli.server.passkey, "Require /announce/<passkey>");
  app.add_option("-c,--config", config_path, "YAML configuration file");
  app.add_flag("--check-config", check_only,
               "Validate the configuration and exit (non-zero on errors)");
  bool print_default = false, print_reference = false, print_man = false;
  app.add_flag("--print-default-config", print_default,
               "Print a commented file listing every key with its default");
  app.add_flag("--print-config-reference", print_reference, "Print the key reference as Markdown");
  app.add_flag("--print-man", print_man, "Print this manual page");
  CLI11_PARSE(app, argc, argv);
  if (print_default || print_reference || print_man) {
    std::vector<std::pair<std::string, std::string>> options;
    for (const auto* o : app.get_options())
      if (o != app.get_help_ptr())
        options.emplace_back(
            o->get_name(false, true) + (o->get_expected_max() == 0 ? "" : " VALUE"),
            o->get_description());
    std::cout << (print_default     ? render_default_config()
                  : print_reference ? render_config_reference()
                                    : render_man_page(options));
    return 0;
  }
  std::vector<std::string> given;
  for (const auto* opt : app.get_options())
    if (opt->count() > 0) given.push_back(opt->get_name(false, true).substr(2));

  std::vector<voxd::config_error> errors;
  tracker_config cfg;
  if (auto s = configure(config_path, cli, given, cfg, errors); !s) {
    for (const auto& e : errors)
      std::cerr << e.format() << "\n";
    return static_cast<int>(voxd::errc::config);
  }
  if (check_only) {
    std::cout << (config_path.empty() ? "command line" : config_path) << ": ok\n";
    return 0;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("voxd-tracker"));
  spdlog::set_pattern(std::getenv("JOURNAL_STREAM") ? "<%l> %v" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  std::signal(SIGPIPE, SIG_IGN);

  try {
    registry reg(cfg.data_dir);
    auto loaded = reg.load();
    if (!loaded) {
      spdlog::critical("{}", loaded.err().message);
      return static_cast<int>(loaded.err().code);
    }
    swarm_store swarms(cfg.limits);
    boost::asio::io_context io;
    server srv(io, cfg.server, swarms, reg);
    if (auto s = srv.start(); !s) {
      spdlog::critical("{}", s.err().message);
      return static_cast<int>(s.err().code);
    }
    boost::asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
    std::function<void(boost::system::error_code, int)> on_signal =
        [&](boost::system::error_code ec, int sig) {
          if (ec) return;
          if (sig == SIGHUP) {
            sd_notify(0, "RELOADING=1");
            std::vector<voxd::config_error> errs;
            tracker_config next;
            if (auto s = configure(config_path, cli, given, next, errs); !s) {
              for (const auto& e : errs)
                spdlog::error("reload refused, keeping the running configuration: {}", e.format());
            } else {
              srv.set_options(next.server);
              swarms.set_limits(next.limits);
              auto n = reg.load();
              spdlog::info("reloaded: {} torrents in the registry", n ? *n : 0);
            }
            sd_notify(0, "READY=1");
            return signals.async_wait(on_signal);
          }
          spdlog::info("{} received; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
          sd_notify(0, "STOPPING=1");
          srv.stop();
          io.stop();
        };
    signals.async_wait(on_signal);
    spdlog::info(
        "voxd-tracker ready: http {} (port {}), udp {} (port {}), {} torrents in the registry",
        cfg.server.http_listen.empty() ? "off" : cfg.server.http_listen, srv.http_port(),
        cfg.server.udp_listen.empty() ? "off" : cfg.server.udp_listen, srv.udp_port(), *loaded);
    sd_notify(0, "READY=1");
    io.run();
    spdlog::info("stopped");
    return 0;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return static_cast<int>(voxd::errc::failure);
  }
}
