package policy

import (
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/internal/identity"
)

// The shipped example policy and its test table must stay in agreement:
// examples that do not work are worse than none.
func TestShippedExamples(t *testing.T) {
	tables, err := filepath.Glob("../../examples/policies/*.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) == 0 {
		t.Fatal("no example test tables found")
	}
	for _, table := range tables {
		t.Run(filepath.Base(table), func(t *testing.T) {
			tf, policyPath, err := LoadTests(table)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadFile(policyPath)
			if err != nil {
				t.Fatal(err)
			}
			e, err := Compile(*cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(tf.Cases) < 20 {
				t.Errorf("only %d cases; the example table should exercise the policy thoroughly", len(tf.Cases))
			}
			for _, r := range RunTests(e, tf.Cases) {
				if !r.Pass {
					t.Error(r)
				}
			}
		})
	}
}

// mcvsphereLevels is the tool → level map of the mcvsphere server the
// example models (src/mcvsphere/permissions.py): 0 READ_ONLY, 1 POWER_OPS,
// 2 VM_LIFECYCLE, 3 HOST_ADMIN, 4 FULL_ADMIN.
var mcvsphereLevels = map[int][]string{
	0: {"list_vms", "get_vm_info", "list_snapshots", "get_vm_stats", "get_host_stats", "list_hosts",
		"get_recent_tasks", "get_recent_events", "get_alarms", "browse_datastore", "get_datastore_info",
		"get_network_info", "get_resource_pool_info", "list_templates", "get_vcenter_info", "list_disks",
		"list_nics", "list_ovf_networks", "get_host_info", "list_services", "get_ntp_config",
		"get_host_hardware", "get_host_networking", "list_folders", "list_recent_tasks",
		"list_recent_events", "list_clusters", "get_drs_recommendations", "get_serial_port",
		"wait_for_vm_tools", "get_vm_tools_status", "vm_screenshot"},
	1: {"power_on", "power_off", "shutdown_guest", "reboot_guest", "reset_vm", "suspend_vm",
		"standby_guest", "create_snapshot", "revert_to_snapshot", "revert_to_current_snapshot",
		"delete_snapshot", "delete_all_snapshots", "rename_snapshot", "connect_nic"},
	2: {"create_vm", "clone_vm", "delete_vm", "reconfigure_vm", "rename_vm", "add_disk", "remove_disk",
		"extend_disk", "attach_iso", "detach_iso", "add_nic", "remove_nic", "change_nic_network",
		"set_nic_mac", "deploy_ovf", "export_vm_ovf", "convert_to_template", "convert_to_vm",
		"deploy_from_template", "create_folder", "move_vm_to_folder", "storage_vmotion", "move_vm_disk",
		"setup_serial_port", "connect_serial_port", "clear_serial_port", "remove_serial_port",
		"download_from_datastore", "upload_to_datastore", "delete_datastore_file",
		"create_datastore_folder", "move_datastore_file", "copy_datastore_file"},
	3: {"enter_maintenance_mode", "exit_maintenance_mode", "reboot_host", "shutdown_host",
		"configure_ntp", "set_service_policy"},
	4: {"start_service", "stop_service", "restart_service", "run_command_in_guest",
		"list_guest_processes", "read_guest_file", "write_guest_file", "list_guest_directory",
		"create_guest_directory", "delete_guest_file"},
}

// The example grants exactly the seed's five-level model: a group at level
// L may call every tool of level <= L and no other.
func TestVSphereExampleMatchesLevels(t *testing.T) {
	cfg, err := LoadFile("../../examples/policies/vsphere.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Compile(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{"vsphere-readers", "vsphere-operators", "vsphere-admins", "vsphere-host-admins", "vsphere-super-admins"}
	n := 0
	for level, tools := range mcvsphereLevels {
		for _, tool := range tools {
			n++
			for gl, g := range groups {
				p := &identity.Principal{Issuer: "https://issuer.test", Subject: "u", Groups: []string{g}, Scopes: []string{"vsphere:guest", "vsphere:host"}}
				d := e.Decide(p, Request{Method: "tools/call", Name: tool, Arguments: []byte(`{"vm_name":"web-1"}`)})
				if want := gl >= level; d.Allow != want {
					t.Errorf("%s (level %d) for %s (level %d): allow=%v (%s), want %v", tool, level, g, gl, d.Allow, d.Rule, want)
				}
			}
		}
	}
	if n != 95 {
		t.Errorf("%d tools in the level map, want 95", n)
	}
}
