# Runs bosh-cli's own ERB renderer script with the links a BOSH Director
# gives templates. bosh-cli renders jobs for create-env, where there are no
# links, so its TemplateEvaluationContext has no link() and an if_link() that
# is always false. This file loads that script unchanged, adds link() and
# if_link() as the Director's evaluation context (bosh-template's
# EvaluationContext, EvaluationLink and EvaluationLinkInstance) defines them,
# reading the links from the context's "links" key, and renders as the
# script's own main block would.
#
#   ruby links.rb BOSH_CLI_RENDERER_SCRIPT CONTEXT_JSON TEMPLATE OUTPUT

renderer_script, context_path, src_path, dst_path = ARGV
load renderer_script # defines the classes; its main block runs only as the main script

class TemplateEvaluationContext
  class UnknownLink < StandardError
    def initialize(name)
      super("Can't find link '#{name}'")
    end
  end

  # EvaluationLinkInstance: one instance of the providing instance group.
  class EvaluationLinkInstance
    attr_reader :name, :index, :id, :az, :address, :properties, :bootstrap

    def initialize(spec)
      @name, @index, @id, @az, @address, @properties, @bootstrap =
        spec.values_at("name", "index", "id", "az", "address", "properties", "bootstrap")
    end
  end

  # EvaluationLink: the instances and the provider's link properties.
  class EvaluationLink
    attr_reader :instances, :properties

    def initialize(instances, properties, context)
      @instances = instances
      @properties = properties || {}
      @context = context
    end

    def p(*args)
      names = Array(args[0])
      names.each do |name|
        result = @context.send(:lookup_property, @properties, name)
        return result unless result.nil?
      end
      return args[1] if args.length == 2
      raise UnknownProperty.new(names)
    end

    def if_p(*names)
      values = names.map do |name|
        value = @context.send(:lookup_property, @properties, name)
        return ActiveElseBlock.new(self) if value.nil?
        value
      end
      yield(*values)
      InactiveElseBlock.new
    end
  end

  attr_writer :links

  def link(name)
    link_spec = (@links || {})[name]
    raise UnknownLink.new(name) if link_spec.nil? || !link_spec.key?("instances")
    create_evaluation_link(link_spec)
  end

  def if_link(name)
    link_spec = (@links || {})[name]
    return ActiveElseBlock.new(self) if link_spec.nil? || !link_spec.key?("instances")
    yield create_evaluation_link(link_spec)
    InactiveElseBlock.new
  end

  private

  def create_evaluation_link(link_spec)
    instances = link_spec["instances"].map { |spec| EvaluationLinkInstance.new(spec) }
    EvaluationLink.new(instances, link_spec["properties"], self)
  end
end

context_hash = JSON.load(File.read(context_path))
context = TemplateEvaluationContext.new(context_hash)
context.links = context_hash["links"]
ERBRenderer.new(context).render(src_path, dst_path)
