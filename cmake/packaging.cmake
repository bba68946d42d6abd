# Debian packages: `cpack -G DEB` from a build configured with
# -DCMAKE_INSTALL_PREFIX=/usr (docs/packaging.md). One package per install
# COMPONENT:
#   agent    -> lars-agent     lars-agent, lars, lars-bench, the plugins,
#                              liblars.so.1 and .so.0, /etc/lars/agent.conf,
#                              lars-agent.service
#   dns      -> lars-dns       lars-dns, lars-admin, /etc/lars/dns.conf, its unit
#   reporter -> lars-reporter  lars-reporter, /etc/lars/reporter.conf, its unit
#   dev      -> liblars-dev    headers, liblars.so, liblars.a, lars.pc,
#                              lars-plugin.pc
# Maintainer scripts (the lars user, state dirs, systemd) come from
# contrib/debian/*.in. tests/install/packages.sh builds, installs, checks and
# purges them (contrib/dev.sh test).
# Included last by the top-level CMakeLists.txt: every install() rule exists.

# A rule without COMPONENT lands in "Unspecified", which no package holds:
# the file would silently be missing from the packages.
get_cmake_property(lars_components COMPONENTS)
set(LARS_PACKAGE_COMPONENTS agent dns reporter dev)
foreach(c IN LISTS lars_components)
  if(NOT c IN_LIST LARS_PACKAGE_COMPONENTS)
    message(FATAL_ERROR
      "install() rule with COMPONENT '${c}': no Debian package holds it. Give the rule "
      "COMPONENT agent, dns, reporter or dev (cmake/packaging.cmake says what each holds).")
  endif()
endforeach()

set(LARS_DEB_RELEASE 1)
set(LARS_DEB_VERSION ${PROJECT_VERSION}-${LARS_DEB_RELEASE})

# Maintainer scripts and conffiles per package. The state dirs each
# package's postinst makes (owner lars, 0750): the agent's route cache
# (agent.cache_dir), the SQLite database of lars-dns and lars-reporter
# (store.path), the log dir of all three (the log_file examples,
# LogsDirectory=lars). A dir several packages use goes on purge with the
# last of them.
set(LARS_DEB_DIR ${CMAKE_BINARY_DIR}/debian)
set(LARS_DEB_PACKAGES lars-agent lars-dns lars-reporter)
set(LARS_DEB_DIRS_lars-agent /var/cache/lars-agent /var/log/lars)
set(LARS_DEB_DIRS_lars-dns /var/lib/lars /var/log/lars)
set(LARS_DEB_DIRS_lars-reporter /var/lib/lars /var/log/lars)
function(lars_deb_package component package conffile)
  set(LARS_DEB_PACKAGE ${package})
  set(LARS_DEB_UNIT ${package}.service)
  string(REPLACE ";" " " LARS_DEB_STATE_DIRS "${LARS_DEB_DIRS_${package}}")
  # postrm: one `purge_dir DIR OTHER-PACKAGES-USING-IT...` line per dir.
  set(LARS_DEB_PURGE_DIRS "")
  foreach(dir IN LISTS LARS_DEB_DIRS_${package})
    set(line "    purge_dir ${dir}")
    foreach(other IN LISTS LARS_DEB_PACKAGES)
      if(NOT other STREQUAL package AND dir IN_LIST LARS_DEB_DIRS_${other})
        string(APPEND line " ${other}")
      endif()
    endforeach()
    string(APPEND LARS_DEB_PURGE_DIRS "${line}\n")
  endforeach()
  set(dir ${LARS_DEB_DIR}/${package})
  foreach(script postinst prerm postrm)
    configure_file(${CMAKE_SOURCE_DIR}/contrib/debian/${script}.in ${dir}/${script} @ONLY
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
      WORLD_READ WORLD_EXECUTE)
  endforeach()
  file(WRITE ${dir}/conffiles "${conffile}\n")
  string(TOUPPER ${component} C)
  set(CPACK_DEBIAN_${C}_PACKAGE_CONTROL_EXTRA
    ${dir}/postinst ${dir}/prerm ${dir}/postrm ${dir}/conffiles PARENT_SCOPE)
endfunction()

lars_deb_package(agent lars-agent /etc/lars/agent.conf)
lars_deb_package(dns lars-dns /etc/lars/dns.conf)
lars_deb_package(reporter lars-reporter /etc/lars/reporter.conf)
# liblars.so.1 and .so.0 live in lars-agent: ldconfig after install/remove.
file(WRITE ${LARS_DEB_DIR}/lars-agent/triggers "activate-noawait ldconfig\n")
list(APPEND CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA ${LARS_DEB_DIR}/lars-agent/triggers)

set(CPACK_PACKAGE_NAME lars)
set(CPACK_PACKAGE_VENDOR "Lars")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Seed 3d565ed7 maintainers <maintainers@users.noreply.r-seed-3d565ed7.example>")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL ${LARS_PACKAGE_COMPONENTS})

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # name_version_arch.deb; arch from dpkg
set(CPACK_DEBIAN_PACKAGE_RELEASE ${LARS_DEB_RELEASE})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from dpkg-shlibdeps (libevent, libssl3, libconfig9,
# libprotobuf-c1, libsqlite3-0, libmariadb3, ...), and a shlibs file plus
# the ldconfig trigger for liblars in lars-agent.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Descriptions: the first line is the summary; CPack indents the rest.
set(CPACK_DEBIAN_AGENT_PACKAGE_NAME lars-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_AGENT_DESCRIPTION "Lars load-balancing agent, CLI and client library
lars-agent answers business code on this host, over UDP, with one node
(ip:port) of a remote service, balancing with the Lars idle/overload
algorithm or a policy plugin, and keeps routes fresh from lars-dns.
Also holds the lars CLI, lars-bench, the shipped policy and transport
plugins, liblars.so.1 and liblars.so.0, the systemd unit and
/etc/lars/agent.conf (static routes, no servers needed).")

set(CPACK_DEBIAN_DNS_PACKAGE_NAME lars-dns)
set(CPACK_DEBIAN_DNS_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_DNS_PACKAGE_SUGGESTS "lars-reporter, mariadb-server")
set(CPACK_DEBIAN_DNS_DESCRIPTION "Lars route service and lars-admin
lars-dns serves module routes from a SQLite or MariaDB store to
lars-agents over TCP and pushes changes; lars-admin edits the routes.
Ships /etc/lars/dns.conf (SQLite in /var/lib/lars) and a systemd unit.")

set(CPACK_DEBIAN_REPORTER_PACKAGE_NAME lars-reporter)
set(CPACK_DEBIAN_REPORTER_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_REPORTER_PACKAGE_SUGGESTS "lars-dns, mariadb-server")
set(CPACK_DEBIAN_REPORTER_DESCRIPTION "Lars statistics service
lars-reporter receives per-node call statistics from lars-agents over TCP
and stores them (ServerCallStatus) in SQLite or MariaDB. Ships
/etc/lars/reporter.conf (SQLite in /var/lib/lars) and a systemd unit.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME liblars-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# liblars.so names liblars.so.1 of the same build; lars.pc needs libprotobuf-c.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "lars-agent (= ${LARS_DEB_VERSION}), libprotobuf-c-dev, pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION "Lars client library and plugin headers (development files)
Headers (lars/client.h, lars/plugin.h), liblars.so and liblars.a, and the
pkg-config files lars.pc (a client: pkg-config --cflags --libs lars) and
lars-plugin.pc (an out-of-tree policy or transport: pkg-config --cflags
lars-plugin; its plugindir variable is where lars-agent loads plugins).")

# A package built from another prefix would put binaries under /usr/local
# with configs the units do not name: refuse at cpack time, saying the fix.
set(CPACK_PROJECT_CONFIG_FILE ${LARS_DEB_DIR}/cpack-project.cmake)
file(WRITE ${CPACK_PROJECT_CONFIG_FILE} "
if(CPACK_GENERATOR STREQUAL \"DEB\" AND NOT \"${CMAKE_INSTALL_PREFIX}\" STREQUAL \"/usr\")
  message(FATAL_ERROR \"Debian packages need a build configured with -DCMAKE_INSTALL_PREFIX=/usr \"
    \"(this one: ${CMAKE_INSTALL_PREFIX}); see docs/packaging.md\")
endif()
")

include(CPack)
